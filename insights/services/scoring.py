"""Score invoices: anomaly and dispute risk, stored with their reasons in `InvoiceScore`.

Called by the billing run for the drafts it has just written (before their
approval requests open, so an ANOMALY warning routes them to the extra
controller step), by revalidation, and after each retraining for every invoice
still awaiting approval or cash. A batch costs a fixed number of queries
(about ten; some twenty with an active risk model, which also reads payments, notes and change
orders — ADR 0125), whatever its size. Scores are advice: the only effect on the
workflow is the ANOMALY warning, which the approval policies route.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import transaction

from billing.models import Invoice, InvoiceException
from insights.behaviour import load_behaviour
from insights.features import extended_risk_vector, invoice_stats, load_dispute_events, load_facts, load_history, select
from insights.models import InvoiceScore, RiskModel
from insights.services.anomaly import HISTORY_WINDOW, AnomalyResult, assess, score_decimal
from insights.services.risk import explain
from kernel.bulk import copy_create

ANOMALY = "ANOMALY"
ANOMALY_FIX_HINT = "Check the lines against the client's usual invoices; a controller approves it as well."
#: Invoices whose scores are kept current after a retraining: awaiting approval or cash.
OPEN_STATUSES = (
    Invoice.Status.PENDING_APPROVAL,
    Invoice.Status.APPROVED,
    Invoice.Status.POSTED,
    Invoice.Status.SENT,
    Invoice.Status.PARTIALLY_PAID,
    Invoice.Status.DISPUTED,
)
UNNUMBERED = (Invoice.Status.DRAFT, Invoice.Status.EXCEPTION, Invoice.Status.PENDING_APPROVAL)


def score_invoices(
    invoices: Sequence[Invoice], *, drafts: Sequence[Any] | None = None, flag: bool = True
) -> dict[int, InvoiceScore]:
    """Score the invoices; with `flag`, unnumbered anomalous ones get an open ANOMALY warning.

    `drafts` (the billing run's `InvoiceDraft`s, in the same order) get the warning too, so the
    run's summary counts it. Credit notes are not scored.
    """
    targets = [(i, d) for i, d in zip(invoices, drafts or [None] * len(invoices), strict=True)]
    targets = [(i, d) for i, d in targets if i.kind == Invoice.Kind.INVOICE]
    if not targets:
        return {}
    ids = [i.pk for i, _d in targets]
    stats = invoice_stats(ids)
    client_ids = {s.client_id for s in stats.values()}
    history = load_history(client_ids)
    anomalies: dict[int, AnomalyResult] = {
        pk: assess(s, history.before(s.client_id, s.currency, s.issue_date, window=HISTORY_WINDOW))
        for pk, s in stats.items()
    }

    model = RiskModel.objects.filter(is_active=True).first()
    risk_note = ""
    risks = {}
    if model is not None:
        facts, codes = load_facts(ids)
        events = load_dispute_events(client_ids)
        behaviour = load_behaviour(ids, client_ids, {f.contract_id for f in facts.values() if f.contract_id})
        for pk in ids:
            values = extended_risk_vector(
                facts[pk],
                codes.get(pk, set()),
                anomaly_max_z=anomalies[pk].score,
                history=history,
                events=events,
                behaviour=behaviour,
            )
            risks[pk] = explain(model.parameters, select(values, model.parameters["features"]))
    else:
        latest = RiskModel.objects.values_list("note", flat=True).first()
        risk_note = "No dispute-risk model is active" + (f": {latest}" if latest else " (none trained yet).")

    warnings = []
    if flag:
        for invoice, draft in targets:
            result = anomalies[invoice.pk]
            if not result.flagged or invoice.status not in UNNUMBERED:
                continue
            warnings.append(
                InvoiceException(
                    invoice=invoice,
                    code=ANOMALY,
                    severity=InvoiceException.Severity.WARNING,
                    message=result.message()[:2000],
                    fix_hint=ANOMALY_FIX_HINT,
                )
            )
            if draft is not None:
                from billing.services.billing_engine import ExceptionDraft

                draft.exceptions.append(
                    ExceptionDraft(code=ANOMALY, severity=InvoiceException.Severity.WARNING, message=result.message())
                )

    scores = []
    for invoice, _draft in targets:
        anomaly = anomalies[invoice.pk]
        risk = risks.get(invoice.pk)
        note = " ".join(n for n in (anomaly.note, "" if risk else risk_note) if n)
        scores.append(
            InvoiceScore(
                invoice=invoice,
                anomaly_score=score_decimal(anomaly),
                anomaly_reasons=anomaly.reasons,
                risk_score=Decimal(str(round(risk.score, 4))) if risk else None,
                risk_reasons=risk.reasons if risk else [],
                risk_model=model if risk else None,
                note=note[:300],
            )
        )
    with transaction.atomic():
        if warnings:
            copy_create(warnings, InvoiceException)
        # One upsert whatever the mix of new and rescored invoices (a fixed number of queries a batch).
        InvoiceScore.objects.bulk_create(
            scores,
            update_conflicts=True,
            unique_fields=["invoice"],
            update_fields=[
                "anomaly_score",
                "anomaly_reasons",
                "risk_score",
                "risk_reasons",
                "risk_model",
                "note",
                "scored_at",
            ],
        )
    return {s.invoice.pk: s for s in scores}


def rescore_open_invoices(*, batch: int = 1000) -> int:
    """Refresh the scores of every invoice awaiting approval or cash (after a retraining); no new warnings."""
    ids = list(
        Invoice.objects.filter(kind=Invoice.Kind.INVOICE, status__in=OPEN_STATUSES)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for offset in range(0, len(ids), batch):
        chunk = list(Invoice.objects.filter(pk__in=ids[offset : offset + batch]).order_by("id"))
        score_invoices(chunk, flag=False)
    return len(ids)
