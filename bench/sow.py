"""SOW extraction benchmark: precision, recall and F1 per field over the labelled statements of work.

    python -m bench.sow [--out bench/results/sow.json] [--verbose]

The corpus is tests/insights/sow_corpus: statements of work and change orders as a firm writes them, `.txt`
files read as text and `.html` files rendered to PDF with WeasyPrint and read back through the PDF reader
(`insights.sow_extract`, the same code the upload uses), with `labels.json` holding what a finance analyst
would enter. The firm's roles are the demo's (Partner, Senior consultant, Consultant, Analyst), with the
built-in synonyms. A suggestion counts as right when its field, value (amounts compared as numbers, rates to
a cent) and role code are those of a label; everything else it suggests is a false positive.

No Django and no database: the rules are pure Python (insights.sow_rules).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "insights" / "sow_corpus"
DEMO_ROLES = (
    ("PARTNER", "Partner"),
    ("SENIOR", "Senior consultant"),
    ("CONSULTANT", "Consultant"),
    ("ANALYST", "Analyst"),
)
FIELDS = ("payment_terms_days", "cap", "rate", "billing_frequency", "po_number")


def document_text(path: Path) -> str:
    """A .txt file's text, or a .html file rendered to PDF and read back by the upload's PDF reader."""
    if path.suffix == ".txt":
        return path.read_text(encoding="utf-8")
    from weasyprint import HTML

    from insights.sow_extract import extract as read_pdf

    result = read_pdf(HTML(string=path.read_text(encoding="utf-8")).write_pdf(), max_pages=50)
    if "error" in result:
        raise RuntimeError(f"{path.name}: {result['error']}")
    return result["text"]


def key(field: str, value: str, role_code: str = "") -> tuple:
    """Comparable form: amounts as numbers (rates to a cent), currency, role."""
    if field in ("cap", "rate"):
        amount, _, ccy = value.partition(" ")
        return field, Decimal(amount).quantize(Decimal("0.01")), ccy, role_code
    return field, value.strip(), "", role_code


def evaluate(kind: str | None = None, *, verbose: bool = False) -> dict:
    """Scores over the corpus (`kind`: 'text', 'pdf' or None for both)."""
    from insights.sow_rules import RoleBook, extract

    labels = json.loads((CORPUS / "labels.json").read_text())
    book = RoleBook.build(DEMO_ROLES)
    counts = {f: {"tp": 0, "fp": 0, "fn": 0} for f in FIELDS}
    documents = []
    started = time.perf_counter()
    for name, expected in sorted(labels.items()):
        path = CORPUS / name
        doc_kind = "text" if path.suffix == ".txt" else "pdf"
        if kind and doc_kind != kind:
            continue
        terms = extract(document_text(path), roles=book, hours_per_day=Decimal("8"))
        got = {key(t.field, t.value, t.role_code) for t in terms}
        want = {key(*label) for label in expected}
        for k in got & want:
            counts[k[0]]["tp"] += 1
        for k in got - want:
            counts[k[0]]["fp"] += 1
        for k in want - got:
            counts[k[0]]["fn"] += 1
        documents.append(
            {
                "document": name,
                "kind": doc_kind,
                "missed": sorted(map(str, want - got)),
                "wrong": sorted(map(str, got - want)),
            }
        )
        if verbose and (want - got or got - want):
            print(
                f"{name}: missed {sorted(map(str, want - got))} wrong {sorted(map(str, got - want))}", file=sys.stderr
            )
    per_field = {f: _prf(c) for f, c in counts.items()}
    total = {k: sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn")}
    return {
        "kind": kind or "all",
        "documents": len(documents),
        "per_field": per_field,
        "micro": _prf(total),
        "seconds": round(time.perf_counter() - started, 3),
        "details": documents,
    }


def _prf(c: dict) -> dict:
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {**c, "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}


def table(result: dict) -> str:
    lines = [
        f"{result['kind']} ({result['documents']} documents)",
        f"{'field':<20}{'tp':>4}{'fp':>4}{'fn':>4}{'P':>7}{'R':>7}{'F1':>7}",
    ]
    for name, r in [*result["per_field"].items(), ("micro", result["micro"])]:
        lines.append(
            f"{name:<20}{r['tp']:>4}{r['fp']:>4}{r['fn']:>4}{r['precision']:>7.3f}{r['recall']:>7.3f}{r['f1']:>7.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sow.json"))
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    results = {kind: evaluate(kind, verbose=args.verbose) for kind in ("text", "pdf")}
    for result in results.values():
        print(table(result))
        print()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
