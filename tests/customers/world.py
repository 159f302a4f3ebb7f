"""Two clients, each with a contact; client A has a sent invoice, a dispute with an attachment, a change order
out for portal signature and a completed milestone awaiting sign-off. Built through the real services."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from approvals.services.defaults import ensure_approval_defaults
from billing.models import ChangeOrder, Invoice, Milestone
from billing.services.milestones import milestone_complete
from customers.models import ClientContact
from customers.services.portal import customer_dispute_open
from disputes.models import Dispute
from tests.customers.factories import contact_of, sent_for_portal_signature, submitted_change_order
from tests.disputes.factories import issued_invoice, lines_of, work_contract
from tests.factories import ClientFactory, ContractFactory, MilestoneFactory, ProjectFactory, UserFactory


@dataclass
class World:
    a: ClientContact
    b: ClientContact
    invoice: Invoice
    dispute: Dispute
    change_order: ChangeOrder
    milestone: Milestone
    b_invoice: Invoice | None = None

    def secrets(self) -> list[str]:
        """Strings only client A's pages may show."""
        return [self.invoice.number, self.change_order.code, self.milestone.name, f"Dispute {self.dispute.pk} "]

    def target(self, key: str) -> Any:
        return {
            "invoice": self.invoice,
            "dispute": self.dispute,
            "note": self.dispute.notes.first(),
            "change_order": self.change_order,
            "milestone": self.milestone,
        }[key]


def build_world() -> World:
    ensure_approval_defaults()
    UserFactory(username="ana", groups=["finance_analyst"])
    contract = work_contract(code="C-A-WORK")
    invoice = issued_invoice(contract=contract)
    client_a = contract.client
    a = contact_of(client_a, "alice@client-a.example", name="Alice Able")
    b = contact_of(ClientFactory(code="CLIENT-B"), "bob@client-b.example", name="Bob Baker")
    first, second = lines_of(invoice)[:2]
    dispute = customer_dispute_open(
        contact=a,
        invoice=invoice,
        lines=[(first, first.amount), (second, second.amount)],
        category="hours",
        description="Hours billed twice",
        attachments=[SimpleUploadedFile("timesheet.csv", b"day,hours\n1,8\n")],
    )
    signing = ContractFactory(code="C-A-SIGN", client=client_a, requires_signed_change_orders=True)
    pm = UserFactory(username="pm", groups=["project_manager"])
    ProjectFactory(contract=signing, project_manager=pm)
    change_order = submitted_change_order(signing, code="CO-SECRET-A", cap_delta=Decimal("1000.00"))
    sent_for_portal_signature(change_order, a, by=pm)
    fixed = ContractFactory(code="C-A-FIXED", client=client_a, fixed_fee=True, requires_customer_signoff=True)
    project = ProjectFactory(contract=fixed, project_manager=pm)
    milestone = MilestoneFactory(project=project, name="Milestone-A-secret")
    milestone = milestone_complete(milestone=milestone, user=pm, evidence="Delivered")
    return World(a=a, b=b, invoice=invoice, dispute=dispute, change_order=change_order, milestone=milestone)
