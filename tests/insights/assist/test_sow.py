"""SOW clause extraction (text and PDF) and the review: accepting applies audited changes, rejecting nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from billing.models import Contract, ContractRate
from insights.models import SowSuggestion
from insights.services.sow import (
    document_text,
    extract_terms,
    parse_amount,
    sow_suggestion_accept,
    sow_suggestion_reject,
    sow_upload,
)
from kernel.errors import ApplicationError, PermissionDeniedError
from tests.factories import ContractFactory, RoleFactory, UserFactory

SAMPLE = Path(__file__).parent / "samples" / "sow_acme.txt"


@pytest.fixture
def roles(db):
    return [
        RoleFactory(code="PARTNER", name="Partner"),
        RoleFactory(code="SENIOR", name="Senior consultant"),
        RoleFactory(code="CONSULTANT", name="Consultant"),
    ]


def _by_field(found):
    out = {}
    for f in found:
        out.setdefault(f.field, []).append(f)
    return out


def test_the_sample_sow_yields_every_kind_of_term_with_its_sentence(roles):
    found = _by_field(extract_terms(SAMPLE.read_text(), roles=roles, contract_currency="EUR"))
    assert [(f.value, f.sentence) for f in found["payment_terms_days"]] == [
        ("45", "Invoices are payable within 45 days of the invoice date.")
    ]
    rates = {f.role_code or f.role_text: f for f in found["rate"]}
    assert rates["SENIOR"].value == "181.2500 EUR"  # EUR 1,450 per day ÷ 8 h
    assert rates["SENIOR"].sentence == "Senior Consultant: EUR 1,450 per day"
    assert rates["PARTNER"].value == "300.0000 EUR"
    assert rates["CONSULTANT"].value == "135.5000 EUR"  # already hourly
    assert rates["Data Scientist"].role_code == "" and rates["Data Scientist"].confidence < rates["SENIOR"].confidence
    assert [f.value for f in found["cap"]] == ["250000.00 EUR"]
    assert "shall not exceed EUR 250,000.00" in found["cap"][0].sentence
    assert [f.value for f in found["po_number"]] == ["4500123456"]
    assert [f.value for f in found["billing_frequency"]] == ["monthly"]
    assert all(Decimal("0") < f.confidence <= Decimal("1") for fs in found.values() for f in fs)


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("Payment terms: Net 30.", "payment_terms_days", "30"),
        ("Payment terms are 60 days from the date of invoice.", "payment_terms_days", "60"),
        ("Fees are capped at €1.250.000,00 for the whole engagement.", "cap", "1250000.00 EUR"),
        ("NTE USD 80,000 including expenses.", "cap", "80000.00 USD"),
        ("Please quote P.O. #: PO-7781 on every invoice.", "po_number", "PO-7781"),
        ("Fees will be invoiced quarterly in advance.", "billing_frequency", "quarterly"),
        ("The Supplier shall invoice upon completion of each milestone.", "billing_frequency", "on_milestone"),
        ("The rate for a Consultant is GBP 120 per hour.", "rate", "120.0000 GBP"),
    ],
)
def test_wordings(roles, text, field, value):
    found = [(f.field, f.value) for f in extract_terms(text, roles=roles)]
    assert (field, value) in found


def test_text_without_terms_suggests_nothing(roles):
    assert extract_terms("The parties will meet weekly to review progress. No PO is needed.", roles=roles) == []


@pytest.mark.parametrize(
    ("text", "amount"),
    [("1,450", "1450"), ("1.450,00", "1450.00"), ("250,000.00", "250000.00"), ("1'450", "1450"), ("135.50", "135.50"),
     ("1 450", "1450"), ("1,5", "1.5")],
)
def test_amounts_in_both_notations(text, amount):
    assert parse_amount(text) == Decimal(amount)


def _pdf(text: str) -> bytes:
    from weasyprint import HTML

    paragraphs = "".join(f"<p>{line}</p>" for line in text.splitlines() if line.strip())
    return HTML(string=f"<html><body style='font-family: sans-serif'>{paragraphs}</body></html>").write_pdf()


def test_a_pdf_sow_is_read_through_its_text_layer(roles):
    pdf = _pdf(SAMPLE.read_text())
    assert pdf[:5] == b"%PDF-"
    text = document_text("sow.pdf", pdf)
    found = {(f.field, f.value, f.role_code) for f in extract_terms(text, roles=roles, contract_currency="EUR")}
    assert ("rate", "181.2500 EUR", "SENIOR") in found
    assert ("payment_terms_days", "45", "") in found
    assert ("cap", "250000.00 EUR", "") in found
    assert ("po_number", "4500123456", "") in found


def test_a_file_that_is_not_a_pdf_is_refused_with_a_message():
    with pytest.raises(ApplicationError, match="could not be read"):
        document_text("broken.pdf", b"%PDF-1.7 not really")


# --- upload and decisions -----------------------------------------------------------------------------


@pytest.fixture
def analyst(db):
    return UserFactory(groups=["finance_analyst"])


@pytest.fixture
def contract(roles, settings, tmp_path):
    """A contract still being set up (draft): accepted terms are written on it at once."""
    settings.MEDIA_ROOT = str(tmp_path)
    return ContractFactory(po_number="", cap=None, payment_terms_days=None, status=Contract.Status.DRAFT)


@pytest.fixture(autouse=True)
def tasks_inline(settings, monkeypatch):
    """django-q2 runs the reading task inline when the upload's transaction commits."""
    from django_q.conf import Conf

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def _upload(django_capture_on_commit_callbacks):
    def upload(contract, user, *, name="sow.txt", content=None):
        with django_capture_on_commit_callbacks(execute=True):
            reading = sow_upload(contract=contract, name=name, content=content or SAMPLE.read_bytes(), user=user)
        reading.refresh_from_db()
        return reading

    return upload


def test_upload_keeps_the_document_on_the_contract_and_suggests_once(contract, analyst, _upload):
    reading = _upload(contract, analyst)
    created = SowSuggestion.objects.filter(contract=contract)
    assert reading.status == "done" and reading.suggestions_created == len(created) == 8
    assert {s.field for s in created} == {"payment_terms_days", "rate", "cap", "po_number", "billing_frequency"}
    contract.refresh_from_db()
    assert contract.sow_document.name == reading.document.name and reading.document.name.startswith("contracts/sow/")
    latest = contract.history.first()
    assert latest.history_user == analyst and latest.history_change_reason == "SOW uploaded: sow.txt"
    again = _upload(contract, analyst)
    assert again.status == "done" and again.suggestions_created == 0  # pending suggestions are not repeated


def test_only_finance_and_billing_admins_upload(contract, _upload):
    with pytest.raises(PermissionDeniedError):
        _upload(contract, UserFactory(groups=["auditor"]))


def _suggestion(contract, field, role=""):
    return SowSuggestion.objects.get(contract=contract, field=field, role_code=role)


def test_accepting_terms_changes_the_contract_with_who_and_why(contract, analyst, _upload):
    _upload(contract, analyst)
    for field in ("payment_terms_days", "cap", "po_number", "billing_frequency"):
        sow_suggestion_accept(suggestion=_suggestion(contract, field), user=analyst, reason="Signed SOW 7")
    contract.refresh_from_db()
    assert contract.payment_terms_days == 45
    assert contract.cap == Decimal("250000.00")
    assert contract.po_number == "4500123456"
    assert contract.billing_frequency == Contract.Frequency.MONTHLY
    reasons = list(contract.history.values_list("history_change_reason", "history_user"))
    terms_pk = _suggestion(contract, "payment_terms_days").pk
    assert (f"Payment terms 45 days. From the SOW (sow.txt #{terms_pk}): Signed SOW 7", analyst.pk) in reasons
    assert any(r.startswith("Cap 250000.00 EUR. From the SOW") for r, _u in reasons)
    suggestion = _suggestion(contract, "cap")
    assert suggestion.decision == "accepted" and suggestion.decided_by == analyst and suggestion.decided_at


def test_accepting_a_rate_adds_a_contract_rate_from_today(contract, analyst, _upload):
    _upload(contract, analyst)
    sow_suggestion_accept(suggestion=_suggestion(contract, "rate", "SENIOR"), user=analyst, reason="Signed SOW")
    rate = ContractRate.objects.get(contract=contract, role__code="SENIOR")
    assert rate.rate == Decimal("181.2500") and rate.effective_from == timezone.localdate()
    assert rate.person is None and rate.change_order is None
    history = rate.history.first()
    assert history.history_user == analyst and history.history_change_reason.startswith("Rate SENIOR 181.2500 EUR/h")


def test_a_rate_of_an_unknown_role_cannot_be_accepted(contract, analyst, _upload):
    _upload(contract, analyst)
    unknown = SowSuggestion.objects.get(contract=contract, field="rate", role_code="")
    with pytest.raises(ApplicationError, match="role the firm does not have"):
        sow_suggestion_accept(suggestion=unknown, user=analyst, reason="Signed SOW")
    unknown.refresh_from_db()
    assert unknown.decision == "pending"


def test_a_term_in_another_currency_is_refused(contract, analyst):
    s = SowSuggestion.objects.create(contract=contract, field="cap", value="80000.00 USD", sentence="NTE USD 80,000.")
    with pytest.raises(ApplicationError, match="in USD; the contract bills in EUR"):
        sow_suggestion_accept(suggestion=s, user=analyst, reason="Signed SOW")
    contract.refresh_from_db()
    assert contract.cap is None


def test_rejecting_changes_nothing_and_a_decision_is_final(contract, analyst, _upload):
    _upload(contract, analyst)
    po = _suggestion(contract, "po_number")
    before = contract.history.count()
    sow_suggestion_reject(suggestion=po, user=analyst)
    contract.refresh_from_db()
    assert contract.po_number == "" and contract.history.count() == before
    with pytest.raises(ApplicationError, match="already rejected"):
        sow_suggestion_accept(suggestion=po, user=analyst, reason="Signed SOW")


# --- the screens --------------------------------------------------------------------------------------


def test_upload_review_and_accept_through_the_screens(contract, analyst, client, django_capture_on_commit_callbacks):
    client.force_login(analyst)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("insights:sow_upload", args=[contract.pk]),
            {"document": SimpleUploadedFile("sow.pdf", _pdf(SAMPLE.read_text()), content_type="application/pdf")},
        )
    assert response.status_code == 302 and response["Location"] == reverse("insights:sow_review", args=[contract.pk])
    page = client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Senior Consultant: EUR 1,450 per day" in html and "181.2500 EUR" in html
    senior = _suggestion(contract, "rate", "SENIOR")
    response = client.post(reverse("insights:sow_decide", args=[senior.pk]), {"decision": "accept", "reason": "ok"})
    assert response.status_code == 302
    assert ContractRate.objects.filter(contract=contract, role__code="SENIOR").exists()


def test_an_invalid_file_type_is_refused_by_the_form(contract, analyst, client):
    client.force_login(analyst)
    response = client.post(
        reverse("insights:sow_upload", args=[contract.pk]),
        {"document": SimpleUploadedFile("sow.docx", b"PK...", content_type="application/octet-stream")},
    )
    assert response.status_code == 200 and "Upload a PDF or a .txt file." in response.content.decode()
    assert not SowSuggestion.objects.filter(contract=contract).exists()


@pytest.mark.parametrize(
    ("role", "review", "decide"),
    [("auditor", 200, 403), ("collections", 403, 403), ("billing_admin", 200, 302), ("project_manager", 403, 403)],
)
def test_who_may_read_and_decide(contract, client, role, review, decide):
    s = SowSuggestion.objects.create(contract=contract, field="po_number", value="PO-1234", sentence="PO PO-1234.")
    client.force_login(UserFactory(groups=[role]))
    assert client.get(reverse("insights:sow_review", args=[contract.pk])).status_code == review
    assert client.post(reverse("insights:sow_decide", args=[s.pk]), {"decision": "reject"}).status_code == decide


def test_the_review_page_takes_a_fixed_number_of_queries(contract, analyst, client, django_assert_max_num_queries):
    client.force_login(analyst)
    SowSuggestion.objects.create(contract=contract, field="po_number", value="PO-1", sentence="PO PO-1.")
    url = reverse("insights:sow_review", args=[contract.pk])
    client.get(url)
    with django_assert_max_num_queries(12) as few:
        client.get(url)
    for i in range(10):
        SowSuggestion.objects.create(contract=contract, field="po_number", value=f"PO-{i + 10}", sentence=".",
                                     decision="rejected", decided_by=analyst, decided_at=timezone.now())
    with django_assert_max_num_queries(12) as many:
        client.get(url)
    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_index_lists_contracts_with_pending_suggestions_and_finds_others(contract, analyst, client):
    other = ContractFactory(code="FIND-ME")
    SowSuggestion.objects.create(contract=contract, field="po_number", value="PO-1", sentence="PO PO-1.")
    client.force_login(analyst)
    html = client.get(reverse("insights:sow_index")).content.decode()
    assert contract.code in html and "FIND-ME" not in html
    html = client.get(reverse("insights:sow_index"), {"q": "find-me"}).content.decode()
    assert "FIND-ME" in html and reverse("insights:sow_upload", args=[other.pk]) in html
    client.force_login(UserFactory(groups=["collections"]))
    assert client.get(reverse("insights:sow_index")).status_code == 403


@pytest.mark.parametrize(("decision", "text"), [("accept", "Accepted: PO number PO-1234"),
                                                ("reject", "Rejected: PO number PO-1234")])
def test_the_decision_message_shows_once(contract, analyst, client, decision, text):
    """Issue #13 item 12: the assist layout printed the messages a second time under the base layout's."""
    s = SowSuggestion.objects.create(contract=contract, field="po_number", value="PO-1234", sentence="PO PO-1234.")
    client.force_login(analyst)
    page = client.post(reverse("insights:sow_decide", args=[s.pk]), {"decision": decision, "reason": "ok"},
                       follow=True)
    assert page.content.decode().count(text) == 1
