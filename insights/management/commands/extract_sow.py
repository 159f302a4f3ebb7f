"""`manage.py extract_sow FILE [--json] [--currency EUR]`: the billing terms a statement of work suggests.

Reads a `.txt` or `.pdf` file (a PDF through the same limited child process as an upload) and prints the
suggestions: payment terms (days, an integer), the fee cap ("amount CCY"), hourly rates per role ("amount
CCY", a day rate divided by the working day the document states, else `INSIGHTS_SOW_HOURS_PER_DAY`), the
billing frequency (monthly | quarterly | on_milestone) and the PO number, each with its confidence and
sentence. Roles are the firm's (codes, names, RoleSynonym); with no roles in the database the usual grades
(PARTNER, SENIOR, CONSULTANT, ANALYST) are assumed and the command says so. Nothing is stored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from insights.services.sow import document_text, hours_per_day, role_book
from insights.sow_rules import RoleBook, extract
from kernel.errors import ApplicationError

USUAL_GRADES = (
    ("PARTNER", "Partner"),
    ("SENIOR", "Senior consultant"),
    ("CONSULTANT", "Consultant"),
    ("ANALYST", "Analyst"),
)


class Command(BaseCommand):
    help = "Print the billing terms suggested by a statement of work or change order (.txt or .pdf)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of a .txt or .pdf file.")
        parser.add_argument("--json", action="store_true", help="A JSON list of suggestions on stdout.")
        parser.add_argument("--currency", default="", help="The contract's currency (others get less confidence).")

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No file {path}.")
        try:
            text = document_text(path.name, path.read_bytes())
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        book, assumed = self._roles()
        terms = extract(
            text,
            roles=book,
            hours_per_day=hours_per_day(),
            hours_per_day_source="firm setting INSIGHTS_SOW_HOURS_PER_DAY",
            contract_currency=options["currency"].upper(),
        )
        if assumed:
            sys.stderr.write("No roles in the database: the usual grades PARTNER, SENIOR, CONSULTANT, ANALYST.\n")
        if options["json"]:
            self.stdout.write(json.dumps([t.as_json() for t in terms], indent=2, ensure_ascii=False))
            return
        if not terms:
            self.stdout.write("No billing terms found.")
        for t in terms:
            role = f" [{t.role_code or t.role_text}]" if t.field == "rate" else ""
            extra = f" (supersedes {t.supersedes})" if t.supersedes else ""
            self.stdout.write(f"{t.field:<20} {t.value}{role}{extra}  confidence {t.confidence:.2f}")
            self.stdout.write(f"    “{t.sentence}”" + (f"\n    {t.note}" if t.note else ""))

    def _roles(self) -> tuple[RoleBook, bool]:
        try:
            book = role_book()
        except DatabaseError:
            book = None
        if book is None or not book.phrases:
            return RoleBook.build(USUAL_GRADES), True
        return book, False
