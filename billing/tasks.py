"""django-q2 entry points for billing; they only call services."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.utils import timezone

from billing.models import BillingRun
from billing.services.billing_run import bill_period, bill_run_chunks, billing_runs_interrupt_stale, run_billing
from kernel.periods import month_of, previous_month


def run_billing_task(billing_run_id: int) -> dict:
    """Execute a queued billing run (started from the finance page or the API)."""
    billing_run = BillingRun.objects.get(pk=billing_run_id)
    if billing_run.status != BillingRun.Status.QUEUED:
        return billing_run.summary  # already taken by another worker: idempotent
    return run_billing(billing_run, fan_out=True, chunk_size=settings.BILLING_RUN_CHUNK_SIZE).summary


def bill_run_chunks_task(billing_run_id: int) -> str:
    """A fanned-out run's chunk (ADR 0115): bill what this worker can claim; delivered twice, bills nothing twice."""
    if not BillingRun.objects.filter(pk=billing_run_id).exists():
        return "no such run"
    return bill_run_chunks(billing_run_id).status


def retry_tax_engine_recordings() -> dict:
    """Scheduled every 5 minutes: report approved invoices the tax engine could not take yet."""
    from billing.services.tax_recordings import tax_engine_retry_pending

    return tax_engine_retry_pending()


def sweep_stale_billing_runs() -> int:
    """Scheduled every minute: runs whose worker died (no heartbeat) become `interrupted`."""
    return len(billing_runs_interrupt_stale())


def monthly_billing_run(period: str | None = None, run_date: str | None = None) -> dict:
    """Scheduled: bill last month, issued today. A repeat bills nothing twice.

    Through the same start checks as the finance page (`billing_run_open`); `period` (YYYY-MM) and
    `run_date` (YYYY-MM-DD) let an operator schedule another month.
    """
    today = date.fromisoformat(run_date) if run_date else timezone.now().date()
    start, end = month_of(date.fromisoformat(f"{period}-01")) if period else previous_month(today)
    return bill_period(period_start=start, period_end=end, run_date=today).summary


def deliver_invoice_task(invoice_id: int) -> str:
    """E-mail a posted invoice once (scheduled when it is posted); a retried task sends nothing twice."""
    from billing.models import Invoice
    from billing.services.delivery import already_delivered, invoice_deliver

    invoice = Invoice.objects.get(pk=invoice_id)
    if already_delivered(invoice):
        return "already delivered"
    return invoice_deliver(invoice=invoice).result
