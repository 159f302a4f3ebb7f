"""Training the dispute-category model on the firm's own disputes (disputes/classify.py, ADR 0106).

One transaction: the new model becomes the active one, with its held-out accuracy beside the accuracy of
always answering the most common category. A model is a suggestion aid only: it sets no category.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from disputes.classify import dispute_text, train
from disputes.models import Dispute, DisputeClassifier, DisputeLine
from kernel.errors import ApplicationError

MIN_SAMPLES = 20


def training_data() -> tuple[list[str], list[str]]:
    """Every dispute's text (description and named lines) and the category a person gave it."""
    lines: dict[int, list[tuple[str, str]]] = {}
    for dl in DisputeLine.objects.select_related("invoice_line").order_by("id"):
        lines.setdefault(dl.dispute_id, []).append((dl.invoice_line.kind, dl.invoice_line.description))
    texts, labels = [], []
    for pk, description, category in Dispute.objects.order_by("id").values_list("pk", "description", "category"):
        texts.append(dispute_text(description, lines.get(pk, [])))
        labels.append(category)
    return texts, labels


@transaction.atomic
def train_dispute_classifier(*, user: Any = None, seed: int = 0) -> DisputeClassifier:
    """Train on every dispute so far; the result becomes the active model (the previous one is kept)."""
    texts, labels = training_data()
    if len(texts) < MIN_SAMPLES or len(set(labels)) < 2:
        raise ApplicationError(
            f"Too little history to train: {len(texts)} disputes in {len(set(labels))} categories "
            f"(at least {MIN_SAMPLES} disputes in two categories).",
            code="too_little_history",
        )
    result = train(texts, labels, seed=seed)
    DisputeClassifier.objects.filter(is_active=True).update(is_active=False)

    def dec(value: float | None) -> Decimal | None:
        return None if value is None else Decimal(str(value)).quantize(Decimal("0.0001"))

    note = ""
    if (
        result.accuracy is not None
        and result.baseline_accuracy is not None
        and result.accuracy <= result.baseline_accuracy
    ):
        note = "No better than always suggesting the most common category: treat its suggestions with care."
    return DisputeClassifier.objects.create(
        algorithm="Multinomial naive Bayes over words and word pairs (scikit-learn)",
        parameters=result.parameters,
        samples=result.samples,
        test_samples=result.test_samples,
        accuracy=dec(result.accuracy),
        baseline_accuracy=dec(result.baseline_accuracy),
        per_class=result.per_class,
        is_active=True,
        trained_by=user if getattr(user, "pk", None) else None,
        note=note,
    )
