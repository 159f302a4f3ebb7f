"""SOW extraction measured on the labelled corpus (tests/insights/sow_corpus): per-field precision, recall
and F1 printed, micro-F1 asserted — ≥ 0.9 on the text documents, ≥ 0.85 on the PDFs (rendered here with
WeasyPrint from the corpus's HTML, read back by the upload's PDF reader).

The same scoring as `python -m bench.sow` (bench/results/sow.json)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from bench.sow import CORPUS, evaluate, table
from insights.sow_rules import RoleBook, extract


def test_the_corpus_has_at_least_twenty_labelled_documents_of_both_kinds():
    labels = json.loads((CORPUS / "labels.json").read_text())
    assert len(labels) >= 20
    assert sum(name.endswith(".txt") for name in labels) >= 10
    assert sum(name.endswith(".html") for name in labels) >= 8
    assert all((CORPUS / name).is_file() for name in labels)
    assert any(
        "change" in (CORPUS / n).read_text().lower() or "amend" in (CORPUS / n).read_text().lower() for n in labels
    )


@pytest.mark.parametrize(("kind", "target"), [("text", 0.9), ("pdf", 0.85)])
def test_micro_f1_on_the_labelled_corpus(kind, target, capsys):
    result = evaluate(kind)
    with capsys.disabled():
        print()
        print(table(result))
        for doc in result["details"]:
            if doc["missed"] or doc["wrong"]:
                print(f"  {doc['document']}: missed {doc['missed']} wrong {doc['wrong']}")
    assert result["documents"] >= 8
    assert result["micro"]["f1"] >= target


def test_the_scoring_can_fail():
    """A suggestion with the wrong value is a false positive and a false negative: the F1 would drop."""
    book = RoleBook.build([("PARTNER", "Partner")])
    text = "The Partner rate is EUR 300 per hour. Payment terms: Net 30."
    terms = {(t.field, t.value, t.role_code) for t in extract(text, roles=book, hours_per_day=Decimal("8"))}
    assert ("rate", "300.0000 EUR", "PARTNER") in terms
    assert ("rate", "310.0000 EUR", "PARTNER") not in terms
