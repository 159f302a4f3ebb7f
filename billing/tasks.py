"""django-q2 entry points for billing; they only call services."""

from __future__ import annotations

from django.utils import timezone

from billing.models import BillingRun
from billing.services.billing_run import billing_runs_interrupt_stale, run_billing
from kernel.periods import previous_month


def run_billing_task(billing_run_id: int) -> dict:
    """Execute a queued billing run (started from the finance page or the API)."""
    billing_run = BillingRun.objects.get(pk=billing_run_id)
    if billing_run.status != BillingRun.Status.QUEUED:
        return billing_run.summary  # already taken by another worker: idempotent
    contracts = billing_run.contract_codes or None
    billing_run = run_billing(
        period_start=billing_run.period_start,
        period_end=billing_run.period_end,
        run_date=billing_run.run_date,
        user=billing_run.started_by,
        contracts=contracts,
        billing_run=billing_run,
    )
    return billing_run.summary


def sweep_stale_billing_runs() -> int:
    """Scheduled every minute: runs whose worker died (no heartbeat) become `interrupted`."""
    return len(billing_runs_interrupt_stale())


def monthly_billing_run() -> dict:
    """Scheduled: bill last month, issued today. A repeat bills nothing twice."""
    today = timezone.now().date()
    start, end = previous_month(today)
    return run_billing(period_start=start, period_end=end, run_date=today).summary


def deliver_invoice_task(invoice_id: int) -> str:
    """E-mail a posted invoice once (scheduled when it is posted); a retried task sends nothing twice."""
    from billing.models import Invoice
    from billing.services.delivery import already_delivered, invoice_deliver

    invoice = Invoice.objects.get(pk=invoice_id)
    if already_delivered(invoice):
        return "already delivered"
    return invoice_deliver(invoice=invoice).result
