"""`manage.py extract_sow FILE --json` on text and PDF, and the firm's own role synonyms (RoleSynonym)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from insights.models import RoleSynonym
from insights.services.sow import extract_terms
from tests.factories import RoleFactory

CORPUS = Path(__file__).resolve().parents[1] / "sow_corpus"


def _run(path: Path) -> list[dict]:
    out = StringIO()
    call_command("extract_sow", str(path), "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def roles(db):
    return [
        RoleFactory(code="PARTNER", name="Partner"),
        RoleFactory(code="SENIOR", name="Senior consultant"),
        RoleFactory(code="CONSULTANT", name="Consultant"),
        RoleFactory(code="ANALYST", name="Analyst"),
    ]


def test_json_of_a_text_sow(roles):
    found = _run(CORPUS / "02_bluepeak_prose.txt")
    assert all(set(f) >= {"field", "value", "confidence", "role_code", "sentence"} for f in found)
    got = {(f["field"], f["value"], f["role_code"]) for f in found}
    assert ("payment_terms_days", "45", "") in got  # "45 days net"; not the 10-day dispute window
    assert ("cap", "95000.00 USD", "") in got  # not the travel-expense limit
    assert ("rate", "240.0000 USD", "SENIOR") in got  # "USD 240 an hour for Senior Consultants"
    assert ("billing_frequency", "quarterly", "") in got
    assert not any(f["field"] == "payment_terms_days" and f["value"] == "8" for f in found)  # ".NET 8"


def test_json_of_a_pdf_change_order(roles, tmp_path):
    from weasyprint import HTML

    pdf = tmp_path / "co.pdf"
    HTML(string=(CORPUS / "19_change_order_pdf.html").read_text()).write_pdf(pdf)
    found = {f["field"]: f for f in _run(pdf)}
    assert found["cap"]["value"] == "150000.00 GBP" and found["cap"]["supersedes"] == "120000.00 GBP"
    assert found["po_number"]["value"] == "PWS-451230"
    assert found["rate"]["value"] == "240.0000 GBP" and found["rate"]["role_code"] == "CONSULTANT"


def test_a_missing_file_is_an_error(db):
    with pytest.raises(CommandError, match="No file"):
        call_command("extract_sow", "/nonexistent/sow.txt")


def test_the_firms_synonym_names_the_role(roles):
    text = "The Engagement Lead is charged at EUR 2,000 per day."
    assert [t.role_code for t in extract_terms(text)] == [""]
    RoleSynonym.objects.create(role=roles[0], phrase="  Engagement   LEAD ")
    assert RoleSynonym.objects.get().phrase == "engagement lead"
    [term] = extract_terms(text)
    assert (term.role_code, term.value) == ("PARTNER", "250.0000 EUR")
