"""The customer side in a real browser: a client contact logs in at the customer door, downloads an invoice and
disputes two lines; finance finds the dispute in its queue; the PM's approval of a change order is refused until
the contact signs it in the portal, then succeeds."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from approvals.services.defaults import ensure_approval_defaults
from billing.models import ChangeOrder, Invoice
from customers.models import SignedDocument
from disputes.models import Dispute
from tests.customers.factories import PASSWORD, contact_of, sent_for_portal_signature, submitted_change_order
from tests.disputes.factories import issued_invoice, lines_of
from tests.factories import ContractFactory, ProjectFactory, UserFactory
from tests.login import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world():
    ensure_approval_defaults()
    UserFactory(username="ana", first_name="Ana", last_name="Lyst", groups=["finance_analyst"])
    pm = UserFactory(username="pm", first_name="Paul", last_name="Meyer", groups=["project_manager"])
    invoice = issued_invoice()
    contact = contact_of(invoice.client, "carla@client.example", name="Carla Contact")
    contract = ContractFactory(code="C-SIGNED", client=invoice.client, requires_signed_change_orders=True)
    ProjectFactory(contract=contract, project_manager=pm)
    change_order = submitted_change_order(
        contract, code="CO-E2E", description="Two more sprints", cap_delta=Decimal("0.00")
    )
    sent_for_portal_signature(change_order, contact, by=pm)
    return invoice, contact, change_order


def test_contact_disputes_and_signs_and_the_pm_approves_after(e2e_settings, new_page, shoot, world):
    invoice, contact, change_order = world
    first, second = lines_of(invoice)[:2]

    # 1. The contact logs in at the customer door and downloads the invoice PDF.
    customer = new_page()
    customer.goto("/customer/login/")
    customer.get_by_label("E-mail").fill(contact.email)
    customer.get_by_label("Password").fill(PASSWORD)
    customer.get_by_role("button", name="Sign in").click()
    customer.wait_for_url(re.compile(r"/customer/$"))
    expect(customer.locator("#open-invoices")).to_contain_text(invoice.number)
    customer.get_by_role("link", name=invoice.number).click()
    href = customer.get_by_role("link", name="Download PDF").get_attribute("href")
    pdf = customer.context.request.get(href)  # the browser's session: what clicking downloads
    assert pdf.ok and pdf.body().startswith(b"%PDF")
    shoot(customer, "customer-01-invoice")

    # 2. … and disputes two lines with a text.
    customer.get_by_role("link", name="Dispute lines").click()
    customer.get_by_label(f"Line {first.position}", exact=True).check()
    customer.get_by_label(f"Line {second.position}", exact=True).check()
    customer.get_by_label("Category").select_option("hours")
    customer.get_by_label("What is wrong").fill("These hours were booked on another project")
    customer.get_by_role("button", name="Send dispute").click()
    customer.wait_for_url(re.compile(r"/customer/disputes/\d+/$"))
    expect(customer.locator("#disputed-lines tr")).to_have_count(2)
    dispute = Dispute.objects.get(invoice=invoice)
    assert dispute.source == "customer" and dispute.lines.count() == 2
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DISPUTED and dispute.disputed_amount < invoice.total

    # 3. Finance sees it in the dispute queue.
    finance = new_page()
    log_in(finance, "ana", "/disputes/")
    expect(finance.locator("main")).to_contain_text(invoice.number)

    # 4. The PM's approval is refused while the change order is unsigned.
    pm = new_page()
    log_in(pm, "pm", "/approvals/change-orders/")
    pm.get_by_role("button", name="Approve change order CO-E2E").click()
    expect(pm.locator("#pm-change-orders .message")).to_contain_text("not signed by the client")
    assert ChangeOrder.objects.get(pk=change_order.pk).status == "submitted"

    # 5. The contact signs it in the portal.
    customer.goto("/customer/change-orders/")
    customer.get_by_role("link", name="CO-E2E").click()
    customer.get_by_label("Your full name").fill("Carla Contact")
    customer.get_by_label("I have read this change order and sign it").check()
    customer.get_by_role("button", name="Sign change order").click()
    expect(customer.locator("#co-status")).to_contain_text("signed by Carla Contact")
    assert SignedDocument.objects.filter(change_order=change_order).exists()
    shoot(customer, "customer-02-signed")

    # 6. Now the PM's approval goes through.
    pm.goto("/approvals/change-orders/")
    pm.get_by_role("button", name="Approve change order CO-E2E").click()
    expect(pm.locator("#pm-change-orders .message")).to_contain_text("approved and applied")
    assert ChangeOrder.objects.get(pk=change_order.pk).status == "approved"
