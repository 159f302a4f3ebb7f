"""Send the payment reminders due today (what the daily schedule does), or show them with --dry-run."""

from __future__ import annotations

import datetime

from django.core.management.base import BaseCommand, CommandError

from disputes.services.collections import dunning_run


class Command(BaseCommand):
    help = "python manage.py send_dunning [--dry-run] [--today YYYY-MM-DD]"

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List the reminders due; send and record nothing")
        parser.add_argument("--today", help="Run as of this date (YYYY-MM-DD); default: today")

    def handle(self, *args, dry_run: bool, today: str | None, **options):
        try:
            day = datetime.date.fromisoformat(today) if today else None
        except ValueError as exc:
            raise CommandError(f"--today {today!r} is not a date (YYYY-MM-DD).") from exc
        summary = dunning_run(today=day, dry_run=dry_run)
        for item in summary.planned:
            invoice = item.invoice
            self.stdout.write(
                f"{'due ' if dry_run else ''}level {item.level_to_send} {invoice.number} {invoice.client.code} "
                f"{item.days_past_due} days past due {invoice.open_balance} {invoice.currency}"
            )
        for notice in summary.notices:
            if notice.result != "sent":
                self.stdout.write(f"FAILED level {notice.level} {notice.invoice.number}: {notice.error}")
        self.stdout.write(summary.as_text())
