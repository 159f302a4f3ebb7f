"""django-q2 entry points of the assistive scores; they only call services."""

from __future__ import annotations

from insights.services.risk import train_risk_model
from insights.services.scoring import rescore_open_invoices

RETRAIN_FUNC = "insights.tasks.retrain_risk_model"


def retrain_risk_model() -> dict:
    """Weekly: train a new dispute-risk model on the labelled history, then refresh open invoices' scores."""
    model = train_risk_model()
    rescored = rescore_open_invoices()
    return {
        "model": model.pk,
        "active": model.is_active,
        "samples": model.samples,
        "positives": model.positives,
        "roc_auc": str(model.roc_auc) if model.roc_auc is not None else None,
        "baseline_auc": str(model.baseline_auc) if model.baseline_auc is not None else None,
        "note": model.note,
        "rescored": rescored,
    }
