"""Start a billing run from the command line (the same service as the UI and scheduler)."""

from __future__ import annotations

import calendar
import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.services.billing_run import bill_period
from kernel.errors import ApplicationError
from kernel.periods import month_bounds


def parse_period(value: str) -> tuple[date, date]:
    try:
        year, month = (int(part) for part in value.split("-"))
        return month_bounds(year, month)
    except (ValueError, calendar.IllegalMonthError) as exc:
        raise CommandError(f"--period must look like 2026-10, not {value!r}.") from exc


class Command(BaseCommand):
    help = "Bill a month: python manage.py billing_run --period 2026-10 [--run-date 2026-11-02] [--contract C ...]"

    def add_arguments(self, parser):
        parser.add_argument("--period", required=True, help="Month to bill, YYYY-MM")
        parser.add_argument("--run-date", help="Issue date, YYYY-MM-DD (default: today)")
        parser.add_argument("--contract", action="append", help="Only this contract code (repeatable)")

    def handle(self, *args, period: str, run_date: str | None, contract: list[str] | None, **options):
        start, end = parse_period(period)
        try:
            issue = date.fromisoformat(run_date) if run_date else timezone.now().date()
        except ValueError as exc:
            raise CommandError(f"--run-date must be YYYY-MM-DD, not {run_date!r}.") from exc
        try:
            billing_run = bill_period(period_start=start, period_end=end, run_date=issue, contracts=contract)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps({"billing_run": billing_run.pk, **billing_run.summary}, indent=2))
