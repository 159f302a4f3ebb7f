"""Run a billing scenario (shared/acceptance/README.md) and print or check its result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from billing.scenario import ScenarioError, compare, run_scenario
from kernel.errors import ApplicationError


class Command(BaseCommand):
    help = "Load a billing scenario, run the real billing run, print the invoices; always rolled back."

    def add_arguments(self, parser):
        parser.add_argument("path", help="Scenario JSON file")
        parser.add_argument("--check", action="store_true", help="Exit 1 with a diff when the result differs")

    def handle(self, *args, path: str, check: bool, **options):
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            self._malformed(f"{path}: no such file")
        except (OSError, UnicodeDecodeError) as exc:
            self._malformed(f"{path}: cannot read ({exc})")
        except json.JSONDecodeError as exc:
            self._malformed(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
        try:
            with transaction.atomic():
                result = run_scenario(data)
                transaction.set_rollback(True)
        except ScenarioError as exc:
            self._malformed(f"malformed scenario: {exc}")
        except ApplicationError as exc:
            self._malformed(f"scenario rejected: {exc.message}")
        self.stdout.write(json.dumps(result, indent=2))
        if check:
            if "expected" not in data:
                self._malformed("malformed scenario: expected: required key is missing for --check")
            diffs = compare(data["expected"], result)
            if diffs:
                self.stderr.write(f"{len(diffs)} difference(s) from 'expected':")
                for line in diffs:
                    self.stderr.write(f"  - {line}")
                sys.exit(1)
            self.stderr.write("OK: the result matches 'expected'.")

    def _malformed(self, message: str) -> None:
        self.stderr.write(message)
        sys.exit(2)


__all__ = ["Command", "CommandError"]
