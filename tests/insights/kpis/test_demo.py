"""The demo's twelve months of history: invariants the services keep, idempotence, every KPI has data."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db.models import Sum
from django_fsm_log.models import StateLog

from approvals.models import ApprovalDecision
from billing.demo import seed_demo
from billing.models import Contract, Invoice, InvoiceNumberSequence, Payment
from disputes.models import Dispute
from insights import selectors
from insights.demo import SUFFIX, _preview_first_run
from insights.features import TIME_KINDS, InvoiceStats, load_history
from insights.services.anomaly import HISTORY_WINDOW, assess
from insights.services.risk import train_risk_model

pytestmark = pytest.mark.django_db


def _quiet(_: str) -> None:
    pass


def test_history_keeps_the_invariants_and_feeds_every_kpi():
    seed_demo(scale=1, log=_quiet)
    issued = Invoice.objects.filter(number__isnull=False)
    assert issued.filter(kind="invoice").count() > 400
    assert issued.filter(kind="credit_note").exists()

    # Numbers are gapless per (entity, year, series) and the sequences continue after them.
    numbers = defaultdict(list)
    for entity_id, kind, number in issued.values_list("entity_id", "kind", "number"):
        prefix, n = re.match(r"^(.*-)(\d{6})$", number).groups()
        numbers[(entity_id, prefix, kind)].append(int(n))
    for (entity_id, prefix, kind), ns in numbers.items():
        assert sorted(ns) == list(range(1, len(ns) + 1)), prefix
        year = int(prefix.rstrip("-").rsplit("-", 1)[1])
        seq = InvoiceNumberSequence.objects.get(entity_id=entity_id, year=year, series=kind)
        assert seq.last_number == len(ns)

    # Running figures agree with the payments and credit notes, and statuses with the figures.
    paid = dict(Payment.objects.values("invoice").annotate(s=Sum("amount")).values_list("invoice", "s"))
    credited = dict(issued.filter(kind="credit_note").values("credit_of").annotate(s=Sum("total"))
                    .values_list("credit_of", "s"))
    for inv in issued.filter(kind="invoice").prefetch_related("lines"):
        assert inv.paid_amount == paid.get(inv.pk, Decimal("0")), inv.number
        assert inv.credited_amount == credited.get(inv.pk, Decimal("0")), inv.number
        if inv.status == "paid":
            assert inv.balance == 0, inv.number
        elif inv.status == "credited":
            assert inv.credited_amount == inv.total
        elif inv.status in ("sent", "partially_paid", "disputed"):
            assert inv.balance > 0, inv.number
        assert inv.total == inv.subtotal + inv.tax_total
        assert sum(line.amount for line in inv.lines.all()) == inv.subtotal
    assert not Payment.objects.filter(date__gt=date(2026, 11, 27)).exists()

    # The transition log has every step the KPIs read, back-dated; decisions have their step times.
    ct = ContentType.objects.get_for_model(Invoice)
    logged = set(StateLog.objects.filter(content_type=ct, transition="mark_posted").values_list("object_id", flat=True))
    assert logged == set(issued.values_list("pk", flat=True))
    assert not StateLog.objects.filter(content_type=ct, timestamp__date__gt=date(2026, 11, 27)).exists()
    assert not ApprovalDecision.objects.filter(step_opened_at__isnull=True).exists()
    assert Invoice.history.filter(history_change_reason__startswith="Demo history").exists()
    live = Dispute.objects.filter(status__in=["open", "investigating"])
    assert live.exists() and not live.exclude(invoice__status="disputed").exists()
    assert Dispute.objects.values("category").distinct().count() >= 5

    # Idempotent: a second seed adds nothing.
    before = {m: m.objects.count() for m in (Invoice, Payment, Dispute, StateLog, ApprovalDecision)}
    seed_demo(scale=1, log=_quiet)
    assert {m: m.objects.count() for m in before} == before

    result = selectors.kpis(date(2025, 11, 1), date(2026, 11, 27), today=date(2026, 11, 27))
    assert result["days_to_invoice"]["n"] > 400
    assert result["approval_latency"]["p90"] > result["approval_latency"]["median"] > 0
    assert 50 < result["first_pass_accuracy"]["pct"] < 95
    assert result["exception_rate"]["by_code"]
    assert result["disputes"]["opened"] > 10 and result["disputes"]["live"] > 0
    assert result["credit_notes"]["count"] > 0
    assert result["dso"]["dso"] is not None
    assert any(b["amount"] for b in result["ar_aging"]["reporting_totals"])
    assert result["leakage"]["unbilled_time"]["hours"] > 0
    assert result["cash_forecast"]["total"] > 0
    assert any(e["actual"] for e in result["cash_forecast"]["error_weeks"])
    # Late payers exist: some payments come more than 20 days after the due date, most on time.
    delays = [(day - due).days for day, due in Payment.objects.values_list("date", "invoice__due_date")]
    assert sum(d > 20 for d in delays) > 10
    assert sum(d <= 5 for d in delays) > len(delays) / 2

    # The dispute-risk model learns from the history's recorded facts: about a tenth disputed, AUC above the gate.
    model = train_risk_model(today=date(2026, 11, 27))
    assert 0.07 < model.positives / model.samples < 0.14, (model.positives, model.samples)
    assert model.is_active, model.note
    assert model.roc_auc > model.baseline_auc

    # The history runs at the scale of the current work: few of the first run's invoices look anomalous.
    current = list(Contract.objects.exclude(code__endswith=SUFFIX).select_related("client"))
    drafts = [d for ds in _preview_first_run(current).values() for d in ds]
    history = load_history(None)
    flagged = 0
    for d in drafts:
        time_lines = [ln for ln in d.lines if ln.kind in TIME_KINDS]
        stats = InvoiceStats(0, d.contract.client_id, d.currency, d.issue_date, d.subtotal,
                             sum((ln.quantity for ln in time_lines), Decimal(0)),
                             sum((ln.amount for ln in time_lines), Decimal(0)), len(d.lines))
        past = history.before(d.contract.client_id, d.currency, d.issue_date, window=HISTORY_WINDOW)
        flagged += assess(stats, past).flagged
    assert len(drafts) > 40 and flagged < len(drafts) * 0.2, (flagged, len(drafts))
