"""Django admin is no side door (ADR 0012): add/change/delete forms as every staff role and a superuser.

Each test posts an admin form — change, delete, add, history revert — for a record only services may
write: a numbered invoice and its lines, approved time, approval decisions, payments, number counters,
billing runs, approval policies. The answer must be a refusal (403, or the admin login for roles without
admin access) and the record unchanged. Control: `admin-locks` (and `audit-trail` for revert).
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from approvals.models import ApprovalDecision, ApprovalPolicy
from billing.models import BillingRun, Invoice, InvoiceLine, InvoiceNumberSequence, Payment, TimeEntry
from kernel.roles import ALL_ROLES, BILLING_ADMIN
from tests.controls.conftest import log_in, pending_invoice
from tests.factories import (
    BillingRunFactory,
    InvoiceNumberSequenceFactory,
    PaymentFactory,
    TimeEntryFactory,
    UserFactory,
)
from tests.integrations.api.factories import posted_invoice

pytestmark = pytest.mark.django_db

AS_EVERY_ROLE = [*ALL_ROLES, "superuser"]
REFUSED = (302, 403)  # the admin login (no admin access at all) or PermissionDenied


def _admin(role: str) -> Client:
    user = UserFactory(username=f"side-{role}", groups=[] if role == "superuser" else [role],
                       is_staff=True, is_superuser=role == "superuser")
    return log_in(Client(), user)


def _url(obj, view: str) -> str:
    meta = obj._meta
    args = [] if view == "add" else [obj.pk]
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


def _decision():
    from approvals.services import approval_approve
    from tests.controls.conftest import pending_request

    invoice = pending_invoice(prepared_by=UserFactory(groups=["finance_analyst"]), total="50000.00")
    approval_approve(request=pending_request(invoice), user=UserFactory(groups=["finance_analyst"]), comment="ok")
    return ApprovalDecision.objects.get(request__object_id=invoice.pk)


#: target → (build it, form data of a forged change, how to read what must not change)
TARGETS = {
    "numbered-invoice": (posted_invoice, {"total": "1.00", "notes": "forged", "po_number": "FORGED"},
                         lambda o: Invoice.objects.filter(pk=o.pk).values("total", "notes", "po_number").get()),
    "invoice-line": (lambda: posted_invoice().lines.first(), {"amount": "0.00", "description": "forged"},
                     lambda o: InvoiceLine.objects.filter(pk=o.pk).values("amount", "description").get()),
    "approved-time": (lambda: TimeEntryFactory(status="approved"), {"hours": "23", "description": "forged"},
                      lambda o: TimeEntry.objects.filter(pk=o.pk).values("hours", "description", "status").get()),
    "decision": (_decision, {"decision": "reject", "comment": "forged"},
                 lambda o: ApprovalDecision.objects.filter(pk=o.pk).values("decision", "comment").get()),
    "payment": (lambda: PaymentFactory(invoice=posted_invoice()), {"amount": "99999.00"},
                lambda o: Payment.objects.filter(pk=o.pk).values("amount", "invoice_id").get()),
    "number-counter": (lambda: InvoiceNumberSequenceFactory(last_number=7), {"last_number": "3"},
                       lambda o: InvoiceNumberSequence.objects.filter(pk=o.pk).values("last_number").get()),
    "billing-run": (BillingRunFactory, {"status": "done"},
                    lambda o: BillingRun.objects.filter(pk=o.pk).values("status", "summary").get()),
}


@pytest.mark.control("admin-locks")
@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("role", AS_EVERY_ROLE)
def test_change_form_is_refused(role, target):
    build, forged, read = TARGETS[target]
    obj = build()
    before = read(obj)

    response = _admin(role).post(_url(obj, "change"), forged)

    assert response.status_code in REFUSED, (role, target, response.status_code)
    assert read(obj) == before


@pytest.mark.control("admin-locks")
@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("role", AS_EVERY_ROLE)
def test_delete_is_refused(role, target):
    build, _forged, _read = TARGETS[target]
    obj = build()

    response = _admin(role).post(_url(obj, "delete"), {"post": "yes"})

    assert response.status_code in REFUSED, (role, target, response.status_code)
    assert type(obj).objects.filter(pk=obj.pk).exists()


ADDS = {
    "decision": (ApprovalDecision, {"step_order": "1", "decision": "approve", "comment": "forged"}),
    "payment": (Payment, {"amount": "100.00", "currency": "EUR", "date": "2025-04-20",
                          "external_reference": "FORGED-1"}),
    "number-counter": (InvoiceNumberSequence, {"year": "2025", "series": "invoice", "last_number": "0"}),
    "billing-run": (BillingRun, {"period_start": "2025-03-01", "period_end": "2025-03-31",
                                 "run_date": "2025-04-01"}),
}


@pytest.mark.control("admin-locks")
@pytest.mark.parametrize("target", sorted(ADDS))
@pytest.mark.parametrize("role", AS_EVERY_ROLE)
def test_adding_service_written_records_is_refused(role, target):
    model, data = ADDS[target]
    before = model.objects.count()

    response = _admin(role).post(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add"), data)

    assert response.status_code in REFUSED, (role, target, response.status_code)
    assert model.objects.count() == before


@pytest.mark.control("admin-locks")
@pytest.mark.parametrize("role", [r for r in AS_EVERY_ROLE if r not in (BILLING_ADMIN, "superuser")])
def test_only_billing_admins_edit_approval_policies(role):
    policy = ApprovalPolicy.objects.filter(subject_type="invoice").order_by("pk").first()
    before = (policy.name, policy.min_amount, policy.active)

    response = _admin(role).post(_url(policy, "change"), {"name": "forged", "min_amount": "0", "active": ""})

    assert response.status_code in REFUSED, (role, response.status_code)
    policy.refresh_from_db()
    assert (policy.name, policy.min_amount, policy.active) == before


@pytest.mark.control("audit-trail")
@pytest.mark.parametrize("role", AS_EVERY_ROLE)
def test_history_cannot_be_reverted(role):
    invoice = posted_invoice()
    history = invoice.history.order_by("history_id").first()
    if history is None:
        pytest.skip("no history row for this invoice")
    before = Invoice.objects.filter(pk=invoice.pk).values("total", "number").get()

    response = _admin(role).post(
        reverse("admin:billing_invoice_simple_history", args=[invoice.pk, history.history_id]), {}
    )

    assert response.status_code in REFUSED, (role, response.status_code)
    assert Invoice.objects.filter(pk=invoice.pk).values("total", "number").get() == before

