"""The approval defaults: policies (the approvals issue) and the reminder schedules.

Shared by the data migrations (0002, 0003) and `ensure_approval_defaults`, a
post_migrate safety net that puts them back when a flush (transactional tests)
emptied the tables. Only absent defaults are created: a billing admin's edits
are never undone. Functions take the model classes, so migrations pass their
historical models.

Bands are in the entity's currency, `min ≤ amount < max`: an invoice of exactly
10,000.00 needs the controller, one of exactly 100,000.00 the second controller.
Lower `priority` wins, so the warning policies (ANOMALY, credit hold) beat the
amount bands.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

ANALYST, CONTROLLER = "finance_analyst", "finance_controller"
ROLE, PM = "role", "project_manager"


def _role(role, sla, escalation=CONTROLLER):
    return {"approver_kind": ROLE, "role": role, "sla_hours": sla, "escalation_role": escalation}


def _pm(sla):
    return {"approver_kind": PM, "role": "", "sla_hours": sla, "escalation_role": CONTROLLER}


POLICIES = [
    {
        "name": "Invoice flagged as an anomaly",
        "description": "An ANOMALY warning adds a controller approval: analyst + two controllers.",
        "subject_type": "invoice",
        "requires_warning": "ANOMALY",
        "priority": 10,
        "steps": [_role(ANALYST, 24), _role(CONTROLLER, 48), _role(CONTROLLER, 48)],
    },
    {
        "name": "Invoice under 10,000 for a client on credit hold",
        "description": "A credit hold routes the invoice to a controller; larger bands have one anyway.",
        "subject_type": "invoice",
        "requires_warning": "CLIENT_ON_CREDIT_HOLD",
        "max_amount": Decimal("10000.00"),
        "priority": 20,
        "steps": [_role(ANALYST, 24), _role(CONTROLLER, 48)],
    },
    {
        "name": "Invoice under 10,000",
        "description": "Finance analyst review.",
        "subject_type": "invoice",
        "max_amount": Decimal("10000.00"),
        "steps": [_role(ANALYST, 24)],
    },
    {
        "name": "Invoice 10,000 to 100,000",
        "description": "Finance analyst review, then a controller.",
        "subject_type": "invoice",
        "min_amount": Decimal("10000.00"),
        "max_amount": Decimal("100000.00"),
        "steps": [_role(ANALYST, 24), _role(CONTROLLER, 48)],
    },
    {
        "name": "Invoice 100,000 and above",
        "description": "Finance analyst review, a controller, then a second controller. "
        "Also applies when the amount cannot be converted to the entity's currency.",
        "subject_type": "invoice",
        "min_amount": Decimal("100000.00"),
        "steps": [_role(ANALYST, 24), _role(CONTROLLER, 48), _role(CONTROLLER, 48)],
    },
    {
        "name": "Credit note",
        "description": "A finance controller approves every credit note.",
        "subject_type": "credit_note",
        "steps": [_role(CONTROLLER, 48)],
    },
    {
        "name": "Milestone",
        "description": "The project's PM; a controller when the PM completed it (segregation of duties).",
        "subject_type": "milestone",
        "steps": [_pm(48)],
    },
    {
        "name": "Time entry",
        "description": "The project's PM; a controller for the PM's own time.",
        "subject_type": "time_entry",
        "steps": [_pm(72)],
    },
    {
        "name": "Expense",
        "description": "The project's PM; a controller for the PM's own expenses.",
        "subject_type": "expense",
        "steps": [_pm(72)],
    },
    {
        "name": "Change order growing the cap over 20 %",
        "description": "A PM of the contract's projects, then a controller.",
        "subject_type": "change_order",
        "min_cap_growth_pct": Decimal("20"),
        "priority": 10,
        "steps": [_pm(72), _role(CONTROLLER, 48)],
    },
    {
        "name": "Change order",
        "description": "A PM of the contract's projects (not the submitter; else a controller).",
        "subject_type": "change_order",
        "steps": [_pm(72)],
    },
]


def seed_default_policies(policy_model: Any, step_model: Any, *, using: str = "default") -> int:
    """Create the default policies that do not exist (by name), with their steps; returns how many."""
    created_count = 0
    for spec in POLICIES:
        spec = dict(spec)
        steps = spec.pop("steps")
        policy, created = policy_model.objects.using(using).get_or_create(name=spec.pop("name"), defaults=spec)
        if not created:
            continue
        created_count += 1
        for order, step in enumerate(steps, start=1):
            step_model.objects.using(using).create(policy=policy, order=order, **step)
    return created_count


SCHEDULES = [
    ("Approvals: escalate overdue approvals", "approvals.tasks.escalate_overdue", "D", None, time(6, 0)),
    ("Approvals: remind missing time", "approvals.tasks.remind_missing_time", "D", None, time(6, 0)),
    ("Approvals: weekly exception digest", "approvals.tasks.weekly_exception_digest", "W", 0, time(7, 0)),
]


def _next_run(weekday: int | None, at: time) -> datetime:
    now = datetime.now(UTC)
    candidate = datetime.combine(now.date(), at, tzinfo=UTC)
    while candidate <= now or (weekday is not None and candidate.weekday() != weekday):
        candidate += timedelta(days=1)
    return candidate


def schedule_reminders(schedule_model: Any, *, using: str = "default") -> None:
    """Daily escalation and missing-time reminders at 06:00 UTC; the digest on Mondays at 07:00 UTC."""
    for name, func, schedule_type, weekday, at in SCHEDULES:
        schedule_model.objects.using(using).get_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": schedule_type,
                "repeats": -1,
                "next_run": _next_run(weekday, at),
            },
        )


def ensure_approval_defaults(sender: Any = None, *, using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: restore the defaults when they are entirely absent (fresh or flushed database).

    Connect it in `ApprovalsConfig.ready()`:
    `post_migrate.connect(ensure_approval_defaults, sender=self, dispatch_uid="approvals.defaults")`.
    """
    from django_q.models import Schedule

    from approvals.models import ApprovalPolicy, ApprovalStep

    if not ApprovalPolicy.objects.using(using).exists():
        seed_default_policies(ApprovalPolicy, ApprovalStep, using=using)
    if not Schedule.objects.using(using).filter(func__startswith="approvals.tasks.").exists():
        schedule_reminders(Schedule, using=using)
