"""Dispute-category suggestions: a model trained on the firm's disputes, better than the most common category on
held-out disputes with a known signal, explained by its words, and advice only (the person picks the category)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from disputes.classify import dispute_text, suggest, tokens, train
from disputes.models import Dispute, DisputeClassifier
from disputes.services import dispute_open
from disputes.services.classifier import train_dispute_classifier
from kernel.errors import ApplicationError
from tests.disputes.factories import issued_invoice, lines_of
from tests.factories import InvoiceFactory

#: What customers write, per category (a known signal), and words any dispute may contain (noise).
PHRASES = {
    "hours": [
        "too many hours booked",
        "timesheet shows fewer hours",
        "consultant worked only three days",
        "hours overbilled this week",
        "time recorded twice on the timesheet",
    ],
    "rate": [
        "wrong hourly rate applied",
        "rate card says a lower rate",
        "senior rate charged for a junior",
        "agreed day rate was lower",
        "rate increase not agreed",
    ],
    "missing_po": [
        "purchase order number missing",
        "quote our PO reference",
        "no PO on the document",
        "PO number is wrong",
        "procurement needs the order number",
    ],
    "tax": [
        "VAT charged although reverse charge",
        "wrong tax rate",
        "our VAT id is missing",
        "sales tax should not apply",
        "tax exemption certificate on file",
    ],
    "duplicate": [
        "billed twice for the same month",
        "duplicate of the previous document",
        "same items charged again",
        "already paid this one",
        "identical charges as last time",
    ],
}
NOISE = ["please", "review", "project", "march", "team", "regards", "attached", "urgent", "account", "client"]
WEIGHTS = {"hours": 40, "rate": 25, "missing_po": 15, "tax": 10, "duplicate": 10}


def corpus(n: int, seed: int = 1) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        category = rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
        words = [rng.choice(PHRASES[category]), *rng.sample(NOISE, 3)]
        if rng.random() < 0.15:  # some disputes also mention another category's words
            words.append(rng.choice(PHRASES[rng.choice(list(PHRASES))]))
        rng.shuffle(words)
        texts.append(". ".join(words))
        labels.append(category)
    return texts, labels


def test_the_model_beats_the_most_common_category_on_held_out_disputes():
    texts, labels = corpus(240)
    result = train(texts, labels, seed=3)
    print(
        f"\nheld-out accuracy {result.accuracy:.3f} vs most common category {result.baseline_accuracy:.3f} "
        f"on {result.test_samples} disputes"
    )
    assert result.test_samples == 60
    assert result.baseline_accuracy < 0.5
    assert result.accuracy >= result.baseline_accuracy + 0.3


def test_without_a_signal_it_is_no_better_than_the_baseline():
    """The evaluation can fail: with labels unrelated to the text, held-out accuracy stays near the baseline."""
    texts, labels = corpus(240)
    random.Random(9).shuffle(labels)
    result = train(texts, labels, seed=3)
    assert result.accuracy <= result.baseline_accuracy + 0.15


def test_a_suggestion_has_its_confidence_and_the_words_that_drove_it():
    texts, labels = corpus(200)
    params = train(texts, labels).parameters
    s = suggest(params, "The VAT was charged although this is a reverse charge supply. Regards")
    assert s.category == "tax" and 0.5 < s.confidence <= 1
    assert "vat" in s.words or "reverse charge" in s.words
    assert all(c != "tax" for c, _ in s.alternatives)
    assert "regards" not in tokens("Kind regards")


def test_the_lines_named_are_part_of_the_text():
    text = dispute_text("See below", [("time", "Senior consultant time March 2025")])
    assert "line time senior consultant time march 2025" in text.lower()


# --- the firm's history, the screens ----------------------------------------------------------------------


def _history(n: int, opened_by) -> None:
    """Closed disputes of the past, on one invoice (only one live dispute per invoice)."""
    invoice = InvoiceFactory()
    texts, labels = corpus(n, seed=5)
    for text, category in zip(texts, labels, strict=True):
        Dispute.objects.create(
            invoice=invoice,
            category=category,
            disputed_amount=Decimal("10"),
            currency="EUR",
            description=text,
            owner=opened_by,
            opened_by=opened_by,
            opened_at=timezone.now(),
            due_date=timezone.localdate(),
            status="withdrawn",
        )


@pytest.mark.django_db
def test_training_on_the_firms_disputes_keeps_one_active_model(analyst):
    with pytest.raises(ApplicationError, match="Too little history"):
        train_dispute_classifier()
    _history(120, analyst)
    first = train_dispute_classifier(user=analyst)
    second = train_dispute_classifier(user=analyst)
    assert DisputeClassifier.objects.get(is_active=True) == second
    first.refresh_from_db()
    assert not first.is_active
    assert second.samples == 120 and second.test_samples == 30
    assert second.accuracy > second.baseline_accuracy
    assert set(second.parameters["classes"]) == set(WEIGHTS)


@pytest.mark.django_db
def test_the_open_form_suggests_and_the_person_still_chooses(client, analyst):
    _history(120, analyst)
    train_dispute_classifier()
    invoice = issued_invoice()
    line = lines_of(invoice)[0]
    client.force_login(analyst)
    url = reverse("disputes:category_suggest", args=[invoice.pk])
    page = client.post(
        url,
        {"description": "Our timesheet shows fewer hours than billed", f"line_{line.pk}": "on"},
        headers={"HX-Request": "true"},
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "Suggested category: Hours" in html and "timesheet" in html
    assert "You choose the category" in html
    assert not Dispute.objects.filter(invoice=invoice).exists()  # a suggestion opens nothing
    # Without JavaScript the form comes back with the suggestion and the typed description; nothing is chosen.
    full = client.post(url, {"description": "Our timesheet shows fewer hours than billed"}).content.decode()
    assert "Suggested category: Hours" in full and "fewer hours than billed</textarea>" in full
    # The category is the person's: opening without one is refused; with one, it is what they chose.
    refused = client.post(
        reverse("disputes:dispute_open", args=[invoice.pk]),
        {"description": "Our timesheet shows fewer hours than billed"},
    )
    assert refused.status_code == 400 and not Dispute.objects.filter(invoice=invoice).exists()
    dispute = dispute_open(
        invoice=invoice,
        category="rate",
        disputed_amount=Decimal("10"),
        user=analyst,
        description="Our timesheet shows fewer hours than billed",
    )
    assert dispute.category == "rate"


@pytest.mark.django_db
def test_no_model_says_so(client, analyst):
    invoice = InvoiceFactory()
    client.force_login(analyst)
    page = client.post(
        reverse("disputes:category_suggest", args=[invoice.pk]),
        {"description": "hours"},
        headers={"HX-Request": "true"},
    )
    assert "no dispute-category model is trained yet" in page.content.decode()


@pytest.mark.django_db
def test_the_model_page_shows_held_out_accuracy_beside_the_baseline(client, analyst, auditor):
    _history(120, analyst)
    model = train_dispute_classifier()
    model.refresh_from_db()
    for user in (analyst, auditor):
        client.force_login(user)
        html = client.get(reverse("disputes:classifier")).content.decode()
        assert f'id="classifier-accuracy">{model.accuracy}<' in html
        assert f'id="classifier-baseline">{model.baseline_accuracy}<' in html
