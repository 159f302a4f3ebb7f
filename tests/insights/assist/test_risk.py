"""Dispute-risk model: its contract (range, reasons, refusal with too little data) and that it learns."""

from __future__ import annotations

import datetime
import math
import random
from decimal import Decimal

import numpy as np
import pytest
from django.core.management import call_command
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.test import override_settings
from django_q.models import Schedule

from billing.models import Invoice, InvoiceException, InvoiceLine
from insights.features import RISK_FEATURE_KEYS
from insights.models import InvoiceScore, RiskModel
from insights.services.risk import explain, fit_risk_model, predict_logit, train_risk_model
from insights.services.scoring import score_invoices
from insights.tasks import retrain_risk_model
from tests.factories import ContractFactory, UserFactory
from tests.insights.assist.factories import issued_invoice

TODAY = datetime.date(2026, 1, 15)


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows in issue order; disputes driven by late time and a missing PO, not by the client's rate."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, len(RISK_FEATURE_KEYS)))
    col = {k: i for i, k in enumerate(RISK_FEATURE_KEYS)}
    x[:, col["client_dispute_rate"]] = rng.uniform(0.05, 0.2, n)
    x[:, col["anomaly_max_z"]] = np.abs(rng.normal(0, 1.5, n))
    x[:, col["late_time"]] = rng.random(n) < 0.2
    x[:, col["po_missing"]] = rng.random(n) < 0.15
    x[:, col["log_amount"]] = rng.normal(9, 1, n)
    x[:, col["days_to_invoice"]] = rng.integers(1, 10, n)
    logit = -3.2 + 2.5 * x[:, col["late_time"]] + 2.0 * x[:, col["po_missing"]] + 0.3 * x[:, col["anomaly_max_z"]]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def test_the_model_beats_the_trivial_baseline_on_a_known_signal():
    x, y = _synthetic(1500, seed=2026)
    fit = fit_risk_model(x, y)
    assert fit.roc_auc is not None and fit.baseline_auc is not None
    assert fit.roc_auc > 0.75
    assert fit.roc_auc > fit.baseline_auc + 0.15
    coef = dict(zip(fit.parameters["features"], fit.parameters["coef"], strict=True))
    assert coef["late_time"] > 0 and coef["po_missing"] > 0
    assert coef["late_time"] > abs(coef["client_dispute_rate"])


def test_scores_are_probabilities_and_the_reasons_add_up_to_the_log_odds():
    x, y = _synthetic(800, seed=7)
    params = fit_risk_model(x, y).parameters
    for row in x[:50]:
        result = explain(params, row.tolist())
        assert 0.0 <= result.score <= 1.0
        assert len(result.reasons) == len(RISK_FEATURE_KEYS)
        assert {r["feature"] for r in result.reasons} == set(RISK_FEATURE_KEYS)
        total = params["intercept"] + sum(r["contribution"] for r in result.reasons)
        assert total == pytest.approx(result.logit, abs=1e-3)
        assert result.score == pytest.approx(1 / (1 + math.exp(-result.logit)))
        assert [abs(r["contribution"]) for r in result.reasons] == sorted(
            (abs(r["contribution"]) for r in result.reasons), reverse=True
        )
    assert predict_logit(params, x[:1])[0] == pytest.approx(explain(params, x[0].tolist()).logit, abs=1e-3)


def test_the_scores_are_calibrated_to_the_dispute_rate_despite_balanced_weights():
    x, y = _synthetic(3000, seed=11)
    params = fit_risk_model(x, y).parameters
    mean_score = np.mean([explain(params, row.tolist()).score for row in x])
    assert abs(mean_score - y.mean()) < 0.1  # a balanced fit alone would centre on ~0.5


@pytest.mark.django_db
def test_training_refuses_with_too_little_history_and_no_score_is_invented():
    contract = ContractFactory()
    invoices = [issued_invoice(contract, datetime.date(2025, m, 4)) for m in range(1, 6)]
    model = train_risk_model(today=TODAY)
    assert not model.is_active
    assert model.samples == 5 and model.positives == 0
    assert "Not enough history" in model.note and "200" in model.note
    assert RiskModel.objects.filter(is_active=True).count() == 0
    draft = issued_invoice(contract, TODAY, status=Invoice.Status.PENDING_APPROVAL)
    score = score_invoices([draft])[draft.pk]
    assert score.risk_score is None and score.risk_reasons == []
    assert "No dispute-risk model is active: Not enough history" in score.note
    assert invoices  # the history is there; it is just too short


def _generated_history(n_clients: int = 20, months: int = 12, seed: int = 5) -> list[Invoice]:
    """Issued invoices, monthly per client; a late-time or missing-PO invoice is disputed far more often."""
    rnd = random.Random(seed)
    owner = UserFactory(groups=["finance_analyst"])
    contracts = [ContractFactory() for _ in range(n_clients)]
    invoices = []
    for month in range(months):
        year, mon = 2024 + (month + 1) // 12, (month + 1) % 12 + 1
        for contract in contracts:
            hours = Decimal(rnd.randint(60, 100))
            net = hours * 100
            invoices.append(
                Invoice(
                    kind="invoice", entity=contract.entity, client=contract.client, contract=contract,
                    currency="EUR", issue_date=datetime.date(year, mon, 4), due_date=datetime.date(year, mon, 28),
                    period_start=datetime.date(year, mon, 1) - datetime.timedelta(days=28),
                    period_end=datetime.date(year, mon, 1) - datetime.timedelta(days=1),
                    po_number=contract.po_number, subtotal=net, total=net, status="draft",
                )
            )
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create(
        InvoiceLine(invoice=i, position=1, kind="time", quantity=i.subtotal / 100, unit_price=100, amount=i.subtotal)
        for i in invoices
    )
    exceptions, disputes = [], []
    from disputes.models import Dispute

    for invoice in invoices:
        late, no_po = rnd.random() < 0.2, rnd.random() < 0.15
        if late:
            exceptions.append(InvoiceException(invoice=invoice, code="LATE_TIME", severity="warning", message="late"))
        if no_po:
            exceptions.append(
                InvoiceException(invoice=invoice, code="PO_REQUIRED_MISSING", severity="blocking", message="no PO",
                                 state="overridden")
            )
        p = 0.03 + 0.55 * late + 0.45 * no_po
        if rnd.random() < p:
            opened = datetime.datetime.combine(
                invoice.issue_date + datetime.timedelta(days=rnd.randint(5, 40)), datetime.time(9), tzinfo=datetime.UTC
            )
            disputes.append(
                Dispute(invoice=invoice, category="hours", disputed_amount=Decimal("100.00"), currency="EUR",
                        owner=owner, opened_by=owner, opened_at=opened, due_date=opened.date(), status="resolved",
                        outcome="upheld")
            )
    InvoiceException.objects.bulk_create(exceptions)
    Dispute.objects.bulk_create(disputes)
    Invoice.objects.filter(pk__in=[i.pk for i in invoices]).update(
        status="posted", number=Concat(Value("G-"), Cast("id", CharField()))
    )
    return invoices


@pytest.mark.django_db
@override_settings(INSIGHTS_RISK_MIN_SAMPLES=150, INSIGHTS_RISK_MIN_POSITIVES=15)
def test_trained_on_the_database_with_a_known_signal_it_activates_and_beats_the_baseline():
    _generated_history()
    model = train_risk_model(today=TODAY)
    assert model.samples == 240
    assert model.positives >= 15
    assert model.is_active, model.note
    assert model.roc_auc > model.baseline_auc + Decimal("0.1")
    params = model.parameters
    coef = dict(zip(params["features"], params["coef"], strict=True))
    assert coef["late_time"] > 0 and coef["po_missing"] > 0

    # a new draft with late time scores higher than a clean one, with reasons
    contract = Invoice.objects.filter(number__startswith="G-").first().contract
    clean = issued_invoice(contract, TODAY, status=Invoice.Status.PENDING_APPROVAL, hours="80.00")
    late = issued_invoice(contract, TODAY, status=Invoice.Status.PENDING_APPROVAL, hours="80.00")
    InvoiceException.objects.create(invoice=late, code="LATE_TIME", severity="warning", message="late")
    scores = score_invoices([clean, late], flag=False)
    assert 0 <= scores[clean.pk].risk_score < scores[late.pk].risk_score <= 1
    top = scores[late.pk].risk_reasons[0]
    assert top["feature"] == "late_time" and top["contribution"] > 0
    assert scores[late.pk].risk_model_id == model.pk

    # retraining replaces the active model (one active at a time) and re-scores open invoices
    result = retrain_risk_model()
    assert RiskModel.objects.filter(is_active=True).count() == 1
    assert result["rescored"] >= 2
    assert InvoiceScore.objects.filter(invoice=clean).exists()


@pytest.mark.django_db
def test_the_command_and_the_weekly_schedule():
    from io import StringIO

    out = StringIO()
    call_command("train_risk_model", "--today", "2026-01-15", stdout=out)
    assert "not active" in out.getvalue() and "Not enough history" in out.getvalue()
    assert Schedule.objects.filter(func="insights.tasks.retrain_risk_model", schedule_type="W").exists()


@pytest.mark.django_db
def test_the_schedule_comes_back_after_a_flush():
    from insights.tasks import ensure_retrain_schedule

    Schedule.objects.filter(func="insights.tasks.retrain_risk_model").delete()
    ensure_retrain_schedule()
    ensure_retrain_schedule()
    schedule = Schedule.objects.get(func="insights.tasks.retrain_risk_model")
    assert schedule.schedule_type == "W" and schedule.next_run.weekday() == 6 and schedule.next_run.hour == 3
