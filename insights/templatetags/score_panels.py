"""Anomaly and dispute-risk scores of an invoice, with their reasons.

A panel of the invoice page (templates/billing/invoice_detail.html): `{% score_panel invoice %}`.
It loads its own data in one query and renders its own template.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string

from insights.models import InvoiceScore
from insights.services.anomaly import threshold

register = template.Library()
TOP_REASONS = 3


@register.simple_tag(takes_context=True)
def score_panel(context: Any, invoice: Any) -> str:
    if getattr(invoice, "kind", "invoice") != "invoice":
        return ""
    score = InvoiceScore.objects.filter(invoice_id=invoice.pk).first()
    risk_reasons = []
    if score is not None and score.risk_score is not None:
        raising = [r for r in score.risk_reasons if r.get("contribution", 0) > 0]
        risk_reasons = raising[:TOP_REASONS] or score.risk_reasons[:TOP_REASONS]
    anomaly_limit = threshold()
    return render_to_string(
        "insights/assist/_score_panel.html",
        {
            "invoice": invoice,
            "score": score,
            "risk_pct": round(float(score.risk_score) * 100) if score and score.risk_score is not None else None,
            "risk_reasons": risk_reasons,
            "anomaly_reasons": (score.anomaly_reasons[:4] if score else []),
            "anomaly_flagged": bool(score and score.anomaly_score is not None and score.anomaly_score > anomaly_limit),
            "anomaly_threshold": anomaly_limit,
            # Plain context (no request): the page's context processors have run already.
            "user": getattr(context.get("request"), "user", None),
        },
    )
