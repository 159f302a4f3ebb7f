"""Small histories for the KPI tests: issued invoices, payments, credit notes, disputes, approval decisions."""

from __future__ import annotations

import datetime
from decimal import Decimal
from itertools import count
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from django_fsm_log.models import StateLog

from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, ApprovalStep
from billing.models import Invoice
from disputes.models import Dispute
from tests.factories import InvoiceFactory, InvoiceLineFactory, PaymentFactory, UserFactory

_numbers = count(1)


def at(day: datetime.date, hour: int = 12) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour), tzinfo=datetime.UTC)


def issued(*, total: str = "1000.00", issue_date: datetime.date, lines: list[dict] | None = None,
           status: str = "posted", **kwargs: Any) -> Invoice:
    """A numbered invoice (lines are written before the number, as the immutability trigger wants)."""
    total_d = Decimal(total)
    invoice = InvoiceFactory(issue_date=issue_date, subtotal=total_d, total=total_d, **kwargs)
    for line in lines or []:
        InvoiceLineFactory(invoice=invoice, **line)
    number = f"T-{next(_numbers):06d}"
    Invoice.objects.filter(pk=invoice.pk).update(number=number, status=status, approved_at=at(issue_date, 9))
    invoice.refresh_from_db()
    return invoice


def credit_note(of: Invoice, *, total: str, issue_date: datetime.date) -> Invoice:
    return issued(total=total, issue_date=issue_date, kind=Invoice.Kind.CREDIT_NOTE, credit_of=of,
                  contract=of.contract)


def pay(invoice: Invoice, amount: str, day: datetime.date):
    return PaymentFactory(invoice=invoice, amount=Decimal(amount), date=day, client=invoice.client)


def log(invoice: Invoice, transition: str, state: str, when: datetime.datetime) -> StateLog:
    return StateLog.objects.create(
        content_type=ContentType.objects.get_for_model(Invoice), object_id=invoice.pk, transition=transition,
        state=state, source_state="", timestamp=when,
    )


def dispute(invoice: Invoice, *, category: str = "rate", opened: datetime.date, amount: str = "100.00",
            status: str = "open", resolved: datetime.date | None = None) -> Dispute:
    owner = UserFactory(groups=["finance_analyst"])
    return Dispute.objects.create(
        invoice=invoice, category=category, disputed_amount=Decimal(amount), currency=invoice.currency,
        owner=owner, opened_by=owner, opened_at=at(opened), due_date=opened + datetime.timedelta(days=30),
        status=status, outcome="upheld" if status == "resolved" else "",
        resolved_at=at(resolved) if resolved else None,
    )


def decision(invoice: Invoice, *, opened: datetime.datetime, hours: float, approver=None, step: int = 1,
             sla_hours: int = 48, policy: ApprovalPolicy | None = None) -> ApprovalDecision:
    if policy is None:
        policy = ApprovalPolicy.objects.create(name=f"Policy {next(_numbers)}", subject_type="invoice")
    ApprovalStep.objects.get_or_create(policy=policy, order=step, defaults=dict(
        approver_kind="role", role="finance_controller", sla_hours=sla_hours))
    request = ApprovalRequest.objects.create(
        content_type=ContentType.objects.get_for_model(Invoice), object_id=invoice.pk, subject_type="invoice",
        policy=policy, status="approved", current_step=step, step_opened_at=opened,
        sla_due_at=opened + datetime.timedelta(hours=sla_hours), contract=invoice.contract, amount=invoice.total,
        currency=invoice.currency, decided_at=opened + datetime.timedelta(hours=hours),
    )
    return ApprovalDecision.objects.create(
        request=request, step_order=step, approver=approver or UserFactory(groups=["finance_controller"]),
        decision="approve", step_opened_at=opened, decided_at=opened + datetime.timedelta(hours=hours),
    )


def now() -> datetime.datetime:
    return timezone.now()
