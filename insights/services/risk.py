"""Dispute-risk model: trained on the firm's own history, explained per invoice (docs/rules/assistive.md).

A logistic regression (scikit-learn) on standardised `insights.features.RISK_FEATURES`,
`class_weight="balanced"` because disputes are rare. Label: the invoice was
disputed or credited within 60 days of its issue date; only invoices whose 60
days have passed are labelled.

Quality is measured honestly on time: sorted by issue date, the model is fitted
on the older 75 % and its ROC AUC measured on the newest 25 % (what it would
have scored had it been trained then), next to a trivial baseline — the
client's past dispute rate alone. The stored model is then refitted on all the
labelled invoices with the same settings. It becomes the active model only with
enough history (`INSIGHTS_RISK_MIN_SAMPLES` 200 labelled invoices, of which
`INSIGHTS_RISK_MIN_POSITIVES` 20 disputed) and a held-out AUC of at least
`INSIGHTS_RISK_MIN_AUC` (0.6); otherwise it is kept for the record with a note
and invoices show no risk score rather than a guess.

Balanced weights train as if half the invoices were disputed; the intercept is
shifted back by the log prior odds so the score reads as a probability. Each
score's reasons are the per-feature contributions to its log-odds,
`coefficient × standardised value`; intercept + Σ contributions = logit(score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import Invoice
from insights.behaviour import load_behaviour
from insights.features import (
    EXTENDED_RISK_FEATURE_KEYS,
    LABEL_WINDOW_DAYS,
    RISK_FEATURE_KEYS,
    RISK_FEATURE_LABELS,
    extended_risk_vector,
    load_dispute_events,
    load_facts,
    load_history,
)
from insights.models import RiskModel

ALGORITHM = "logistic_regression"
HOLDOUT_SHARE = 0.25
BASELINE_FEATURE = "client_dispute_rate"


def _setting(name: str, default: float) -> float:
    return getattr(settings, name, default)


def min_samples() -> int:
    return int(_setting("INSIGHTS_RISK_MIN_SAMPLES", 200))


def min_positives() -> int:
    return int(_setting("INSIGHTS_RISK_MIN_POSITIVES", 20))


def min_auc() -> float:
    return float(_setting("INSIGHTS_RISK_MIN_AUC", 0.6))


# --- fitting (pure: arrays in, parameters out) ----------------------------------------------------------


@dataclass
class FitResult:
    parameters: dict
    roc_auc: float | None
    baseline_auc: float | None
    note: str


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2:
        return None
    return float(roc_auc_score(y, scores))


def _fit(x: np.ndarray, y: np.ndarray, features: tuple[str, ...] = RISK_FEATURE_KEYS) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0)
    clf.fit(scaler.transform(x), y)
    prior = float(y.mean())
    prior_shift = math.log(prior / (1 - prior)) if 0 < prior < 1 else 0.0
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    return {
        "features": list(features),
        "mean": [float(v) for v in scaler.mean_],
        "scale": [float(v) for v in scale],
        "coef": [float(v) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]) + prior_shift,
        "balanced_intercept": float(clf.intercept_[0]),
        "prior": prior,
        "C": 1.0,
    }


def fit_risk_model(x: np.ndarray, y: np.ndarray, *, features: tuple[str, ...] = RISK_FEATURE_KEYS) -> FitResult:
    """Time-ordered evaluation and a final fit; rows of `x` must be in issue order (oldest first)."""
    n = len(y)
    cut = math.ceil(n * (1 - HOLDOUT_SHARE))
    x_train, y_train, x_test, y_test = x[:cut], y[:cut], x[cut:], y[cut:]
    if len(set(y_train.tolist())) < 2:
        return FitResult({}, None, None, "The older 75 % holds only one class; nothing to learn from.")
    held_out = _fit(x_train, y_train, features)
    auc = _auc(y_test, predict_logit(held_out, x_test))
    baseline = _auc(y_test, x_test[:, features.index(BASELINE_FEATURE)]) if BASELINE_FEATURE in features else None
    if baseline is None and auc is not None:
        baseline = 0.5  # a constant baseline ranks nothing
    parameters = _fit(x, y, features)
    parameters["holdout"] = {"train": cut, "test": n - cut}
    note = "" if auc is not None else "The newest 25 % holds only one class: no AUC."
    return FitResult(parameters, auc, baseline, note)


def predict_logit(parameters: dict, x: np.ndarray) -> np.ndarray:
    mean, scale = np.asarray(parameters["mean"]), np.asarray(parameters["scale"])
    coef = np.asarray(parameters["coef"])
    return ((x - mean) / scale) @ coef + parameters["intercept"]


@dataclass
class RiskResult:
    score: float
    reasons: list[dict]
    logit: float


def explain(parameters: dict, values: list[float]) -> RiskResult:
    """Score one invoice and give each feature's contribution to its log-odds, largest first."""
    contributions = []
    total = parameters["intercept"]
    for key, value, mean, scale, coef in zip(
        parameters["features"], values, parameters["mean"], parameters["scale"], parameters["coef"], strict=True
    ):
        contribution = coef * (value - mean) / scale
        total += contribution
        contributions.append(
            {
                "feature": key,
                "label": RISK_FEATURE_LABELS.get(key, key),
                "value": round(float(value), 4),
                "contribution": round(contribution, 4),
            }
        )
    contributions.sort(key=lambda r: -abs(r["contribution"]))
    score = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, total))))
    return RiskResult(score=score, reasons=contributions, logit=total)


# --- training on the database -----------------------------------------------------------------------------


@dataclass
class Comparison:
    """The current (invoice-only) and the extended feature set, fitted and measured on the same time split."""

    base: FitResult
    extended: FitResult
    train: int
    test: int
    test_positives: int

    @property
    def winner(self) -> str:
        """ "extended" only when it ranks the held-out invoices strictly better; a tie keeps the simpler model."""
        if self.extended.roc_auc is not None and (
            self.base.roc_auc is None or self.extended.roc_auc > self.base.roc_auc
        ):
            return "extended"
        return "base"

    def as_dict(self) -> dict:
        return {
            "split": "time-ordered: oldest 75 % train, newest 25 % test",
            "train": self.train,
            "test": self.test,
            "test_positives": self.test_positives,
            "base_features": list(RISK_FEATURE_KEYS),
            "added_features": [k for k in EXTENDED_RISK_FEATURE_KEYS if k not in RISK_FEATURE_KEYS],
            "base_auc": _round(self.base.roc_auc),
            "extended_auc": _round(self.extended.roc_auc),
            "client_rate_baseline_auc": _round(self.base.baseline_auc),
            "winner": self.winner,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def compare_feature_sets(x: np.ndarray, y: np.ndarray) -> Comparison:
    """Fit the current features (the first columns of `x`) and all of them on the same split; rows oldest first."""
    base_cols = len(RISK_FEATURE_KEYS)
    base = fit_risk_model(x[:, :base_cols], y, features=RISK_FEATURE_KEYS)
    extended = fit_risk_model(x, y, features=EXTENDED_RISK_FEATURE_KEYS)
    cut = math.ceil(len(y) * (1 - HOLDOUT_SHARE))
    return Comparison(base, extended, cut, len(y) - cut, int(y[cut:].sum()))


def training_set(*, today: date) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Issued invoices whose 60-day label window has closed, oldest first: ids, features, labels.

    The columns are `EXTENDED_RISK_FEATURE_KEYS` (the invoice's own features first).
    """
    from insights.services.anomaly import HISTORY_WINDOW, assess

    cutoff = today - timedelta(days=LABEL_WINDOW_DAYS)
    history = load_history(None)
    ids = list(
        Invoice.objects.filter(kind=Invoice.Kind.INVOICE, number__isnull=False, issue_date__lte=cutoff)
        .order_by("issue_date", "id")
        .values_list("id", flat=True)
    )
    if not ids:
        return [], np.zeros((0, len(EXTENDED_RISK_FEATURE_KEYS))), np.zeros(0)
    facts, codes = load_facts(ids)
    events = load_dispute_events(None)
    behaviour = load_behaviour(ids, None, {f.contract_id for f in facts.values() if f.contract_id})
    stats = {s.invoice_id: s for s in history.all_stats()}
    rows, labels = [], []
    for pk in ids:
        f = facts[pk]
        s = stats[pk]
        anomaly = assess(s, history.before(f.client_id, f.currency, f.issue_date, window=HISTORY_WINDOW))
        rows.append(
            extended_risk_vector(
                f,
                codes.get(pk, set()),
                anomaly_max_z=anomaly.score,
                history=history,
                events=events,
                behaviour=behaviour,
            )
        )
        labels.append(events.label(pk, f.issue_date))
    return ids, np.asarray(rows, dtype=float), np.asarray(labels, dtype=int)


@transaction.atomic
def train_risk_model(*, today: date | None = None) -> RiskModel:
    """Train, evaluate and (when good enough) activate a new model; the attempt is always recorded.

    Both feature sets are fitted on the same time split; the one with the higher held-out AUC
    is kept (the invoice-only set on a tie) and both AUCs are recorded in `parameters["comparison"]`.
    """
    today = today or timezone.localdate()
    ids, x, y = training_set(today=today)
    samples, positives = len(ids), int(y.sum()) if len(y) else 0
    model = RiskModel(
        algorithm=ALGORITHM, features=list(RISK_FEATURE_KEYS), samples=samples, positives=positives, is_active=False
    )
    if samples < min_samples() or positives < min_positives():
        model.note = (
            f"Not enough history: {samples} labelled invoices with {positives} disputed or credited; "
            f"a model needs {min_samples()} with {min_positives()}. No risk scores are shown."
        )[:300]
        model.save()
        return model
    comparison = compare_feature_sets(x, y)
    fit = comparison.extended if comparison.winner == "extended" else comparison.base
    model.features = list(fit.parameters.get("features", RISK_FEATURE_KEYS))
    model.parameters = {**fit.parameters, "comparison": comparison.as_dict()}
    model.roc_auc = _dec(fit.roc_auc)
    model.baseline_auc = _dec(fit.baseline_auc)
    if fit.roc_auc is None or fit.roc_auc < min_auc():
        model.note = (fit.note or f"Held-out AUC {fit.roc_auc:.3f} is below {min_auc():.2f}: not activated.")[:300]
        model.save()
        return model
    RiskModel.objects.filter(is_active=True).update(is_active=False)
    model.is_active = True
    c = comparison.as_dict()
    model.note = (
        f"Trained on {samples} invoices issued up to {today - timedelta(days=LABEL_WINDOW_DAYS)}; "
        f"held-out AUC {c['extended_auc']} with payment behaviour, notes and churn, {c['base_auc']} without: "
        f"{'extended' if comparison.winner == 'extended' else 'invoice-only'} features kept."
    )[:300]
    model.save()
    return model


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(round(value, 4)))


def active_model() -> RiskModel | None:
    return RiskModel.objects.filter(is_active=True).first()


def model_summary(model: Any) -> list[dict]:
    """Coefficients by feature (for the model page), largest effect first."""
    params = getattr(model, "parameters", None) or {}
    rows = [
        {"feature": key, "label": RISK_FEATURE_LABELS.get(key, key), "coef": coef}
        for key, coef in zip(params.get("features", []), params.get("coef", []), strict=False)
    ]
    rows.sort(key=lambda r: -abs(r["coef"]))
    return rows
