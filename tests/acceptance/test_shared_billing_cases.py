"""Every worked example passes through `run_scenario --check` (the real CLI path).

billing/ holds the shared cases verbatim; billing_extra/ our own cases for rules
the shared ones do not cover.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command

from billing.models import Client, Invoice, TimeEntry

HERE = Path(__file__).parent
CASES = sorted(HERE.glob("billing/*.json")) + sorted(HERE.glob("billing_extra/*.json"))


@pytest.mark.django_db
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_shared_case_matches_expected(path, capsys):
    call_command("run_scenario", str(path), "--check")  # exits 1 on any difference
    out = json.loads(capsys.readouterr().out)
    expected = json.loads(path.read_text())["expected"]
    assert len(out["invoices"]) == len(expected["invoices"])
    # The scenario ran in a transaction that was rolled back.
    assert not Invoice.objects.exists()
    assert not TimeEntry.objects.exists()
    assert not Client.objects.exists()


def test_there_are_shared_cases():
    assert len(list(HERE.glob("billing/*.json"))) >= 12
