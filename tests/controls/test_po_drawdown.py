"""No invoice beyond its purchase order (control `po-drawdown`, ADR 0068).

Attempts around the drawdown rule: a controller's override of PO_EXCEEDED, raw SQL pushing a blocked
invoice to approval or lowering the PO, Django admin lowering or renumbering a PO that invoices draw
on, and the API upsert lowering it. Each must be refused and leave the committed drawdown within the
PO amount.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from billing.models import Invoice, PurchaseOrder
from billing.services.billing_run import bill_period
from billing.services.invoices import invoice_override
from billing.services.purchase_orders import committed_drawdown
from integrations.services.clients import integration_client_create
from kernel.errors import ApplicationError
from tests.billing.po_helpers import END, RUN_DATE, START, bill_hours, po_contract, purchase_order
from tests.controls.conftest import log_in
from tests.factories import ClientFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("po-drawdown")]


def _two_invoices_on_one_po():
    """PO 1000.00: C-CTL-A's 800.00 fits (pending approval), C-CTL-B's 400.00 does not (PO_EXCEEDED)."""
    po = purchase_order(ClientFactory(code="CTL-PO", external_id="crm-ctl-po", source="crm"), amount="1000.00")
    po.source, po.external_id = "crm", "po-ctl-1"
    po.save()
    first, second = po_contract("C-CTL-A", po), po_contract("C-CTL-B", po)
    bill_hours(first, "8.00")
    bill_hours(second, "4.00")
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    fits = Invoice.objects.get(contract=first)
    blocked = Invoice.objects.get(contract=second)
    assert fits.status == Invoice.Status.PENDING_APPROVAL
    assert blocked.status == Invoice.Status.EXCEPTION
    assert blocked.exceptions.filter(code="PO_EXCEEDED").exists()
    return po, fits, blocked


def test_no_override_lets_a_po_exceeded_invoice_through():
    po, _fits, blocked = _two_invoices_on_one_po()
    controller = UserFactory(groups=["finance_controller"])
    with pytest.raises(ApplicationError, match="PO_EXCEEDED"):
        invoice_override(invoice=blocked, user=controller, reason="The client will pay anyway")
    blocked.refresh_from_db()
    assert blocked.status == Invoice.Status.EXCEPTION
    assert committed_drawdown([po.pk])[po.pk] == Decimal("800.00")


@pytest.mark.postgres  # the drawdown triggers are PostgreSQL functions
def test_sql_cannot_push_an_invoice_beyond_its_po():
    po, _fits, blocked = _two_invoices_on_one_po()
    with pytest.raises(IntegrityError, match="overdrawn"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_invoice SET status = 'pending_approval' WHERE id = %s", [blocked.pk])
    blocked.refresh_from_db()
    assert blocked.status == Invoice.Status.EXCEPTION
    assert committed_drawdown([po.pk])[po.pk] <= po.amount


@pytest.mark.postgres  # the drawdown triggers are PostgreSQL functions
def test_sql_cannot_lower_a_po_below_what_is_invoiced():
    po, _fits, _blocked = _two_invoices_on_one_po()
    with pytest.raises(IntegrityError, match="below what is already drawn"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute("UPDATE billing_purchaseorder SET amount = 799.99 WHERE id = %s", [po.pk])
    po.refresh_from_db()
    assert po.amount == Decimal("1000.00")


@pytest.mark.parametrize("role", ["billing_admin", "finance_analyst", "superuser"])
def test_admin_cannot_lower_a_po_below_what_is_invoiced_or_renumber_it(role):
    po, _fits, _blocked = _two_invoices_on_one_po()
    user = UserFactory(username=f"po-{role}", groups=[] if role == "superuser" else [role], is_staff=True,
                       is_superuser=role == "superuser")
    browser = log_in(Client(), user)
    url = reverse("admin:billing_purchaseorder_change", args=[po.pk])
    form = {
        "number": po.number, "client": po.client_id, "currency": "EUR", "amount": "500.00",
        "valid_from": "2025-01-01", "valid_to": "2025-12-31", "raised_by": "", "notes": "", "source": "crm",
        "external_id": "po-ctl-1", "change_reason": "Client cut the budget",
    }
    lowered = browser.post(url, form)
    assert lowered.status_code == 200 and b"already invoiced" in lowered.content  # the form refuses it
    renumbered = browser.post(url, {**form, "amount": "1000.00", "number": "PO-OTHER"})
    assert renumbered.status_code == 200 and b"issue a new PO instead" in renumbered.content
    po.refresh_from_db()
    assert (po.amount, po.number) == (Decimal("1000.00"), "PO-4711")
    raised = browser.post(url, {**form, "amount": "1200.00", "change_reason": ""})
    assert raised.status_code == 200 and b"Say why" in raised.content  # a PO in use changes with a reason
    raised = browser.post(url, {**form, "amount": "1200.00"})
    assert raised.status_code == 302
    po.refresh_from_db()
    assert po.amount == Decimal("1200.00")
    assert po.history.first().history_change_reason == "Client cut the budget"


def test_the_api_cannot_lower_a_po_below_what_is_invoiced():
    po, _fits, _blocked = _two_invoices_on_one_po()
    _client, token, _secret = integration_client_create(name="crm-po", scopes=["write:masterdata",
                                                                                 "read:masterdata"], source="crm")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = {"number": "PO-4711", "client_code": "CTL-PO", "currency": "EUR", "amount": "700.00",
            "valid_from": "2025-01-01", "valid_to": "2025-12-31"}
    response = api.put("/api/v1/purchase-orders/po-ctl-1/", body, format="json")
    assert response.status_code in (400, 409), response.content
    assert PurchaseOrder.objects.get(pk=po.pk).amount == Decimal("1000.00")
    response = api.put("/api/v1/purchase-orders/po-ctl-1/", {**body, "amount": "1300.00"}, format="json")
    assert response.status_code == 200, response.content
    assert PurchaseOrder.objects.get(pk=po.pk).amount == Decimal("1300.00")
