"""Approval prioritisation: the expected cash impact of each invoice waiting for a decision (docs/rules/assistive.md).

    expected cash impact = amount in the entity's currency × (1 − dispute risk) × urgency

- amount: the approval request's entity-currency amount (converted when the request
  opened); without one (no FX rate, or not in approval), the invoice total as it is;
- dispute risk: the invoice's score from the active model; none → 0 (the order is then
  amount × urgency — a documented, neutral fallback rather than a guessed risk);
- urgency: 2 for an invoice dated in an earlier month (its period is closing late,
  cash is already slipping), 1 + 1 / (1 + days left to this month's end) for one dated
  this month (1.03 at the start of a 30-day month, 2 on its last day), 1 for later dates.

Computed in SQL as annotations on the queue's queryset: no query per row.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.contrib.contenttypes.models import ContentType
from django.db.models import Case, DecimalField, ExpressionWrapper, F, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from kernel.periods import month_of

MONEY = DecimalField(max_digits=24, decimal_places=6)


def urgency_today(today: datetime.date) -> tuple[datetime.date, datetime.date, Decimal]:
    """(first day of this month, last day of this month, urgency of an invoice dated this month)."""
    first, last = month_of(today)
    days_left = (last - today).days
    return first, last, (Decimal(1) + Decimal(1) / Decimal(1 + days_left)).quantize(Decimal("0.000001"))


def annotate_cash_impact(qs: QuerySet, *, today: datetime.date | None = None) -> QuerySet:
    """Invoices with `entity_amount_est`, `risk`, `urgency` and `cash_impact` (in the entity's currency)."""
    from approvals.models import ApprovalRequest
    from billing.models import Invoice

    today = today or timezone.localdate()
    first, last, this_month = urgency_today(today)
    request_amount = (
        ApprovalRequest.objects.filter(
            content_type=ContentType.objects.get_for_model(Invoice), object_id=OuterRef("pk")
        )
        .order_by("-created_at", "-pk")
        .values("entity_amount")[:1]
    )
    return qs.annotate(
        entity_amount_est=Coalesce(Subquery(request_amount, output_field=MONEY), F("total"), output_field=MONEY),
        risk=Coalesce(F("score__risk_score"), Value(Decimal("0")), output_field=MONEY),
        urgency=Case(
            When(issue_date__lt=first, then=Value(Decimal("2"))),
            When(issue_date__lte=last, then=Value(this_month)),
            default=Value(Decimal("1")),
            output_field=MONEY,
        ),
    ).annotate(
        cash_impact=ExpressionWrapper(
            F("entity_amount_est") * (Value(Decimal("1")) - F("risk")) * F("urgency"), output_field=MONEY
        )
    )
