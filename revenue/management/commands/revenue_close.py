"""Close a revenue month from the command line (the same service as the finance screen and the scheduler)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from kernel.errors import ApplicationError
from revenue.recognition import month_start
from revenue.services.close import revenue_close


class Command(BaseCommand):
    help = (
        "Close a revenue month: python manage.py revenue_close --period 2026-10 "
        "[--draft] [--reason TEXT] [--override REASON]"
    )

    def add_arguments(self, parser):
        parser.add_argument("--period", required=True, help="Month to close, YYYY-MM")
        parser.add_argument("--draft", action="store_true", help="Compute (or recompute) the draft; do not lock")
        parser.add_argument("--reason", default="", help="Why (kept in the period's history)")
        parser.add_argument("--override", default="", help="Close although checklist items are open: the reason")

    def handle(self, *args, period: str, draft: bool, reason: str, override: str, **options):
        try:
            month_start(period)
        except (ValueError, TypeError) as exc:
            raise CommandError(f"--period must look like 2026-10, not {period!r}.") from exc
        try:
            record = revenue_close(
                period=period,
                user=None,
                lock=not draft,
                reason=reason or "revenue_close command",
                override_reason=override,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        summary = {
            "period": record.label,
            "status": record.status,
            "schedules": record.schedules.count(),
            "journals": record.journals.count(),
            "duration_ms": record.duration_ms,
        }
        self.stdout.write(json.dumps(summary, indent=2))
