"""Default approval policies (the approvals issue); billing admins edit them in Django admin.

Bands are in the entity's currency, `min ≤ amount < max`: an invoice of exactly
10,000.00 needs the controller, one of exactly 100,000.00 the second controller.
Lower `priority` wins, so the warning policies (ANOMALY, credit hold) beat the
amount bands. Re-running the migration does not overwrite edited policies.
"""
from decimal import Decimal

from django.db import migrations

ANALYST, CONTROLLER = "finance_analyst", "finance_controller"
ROLE, PM = "role", "project_manager"


def _role(role, sla, escalation=CONTROLLER):
    return {"approver_kind": ROLE, "role": role, "sla_hours": sla, "escalation_role": escalation}


def _pm(sla):
    return {"approver_kind": PM, "role": "", "sla_hours": sla, "escalation_role": CONTROLLER}


POLICIES = [
    {
        "name": "Invoice flagged as an anomaly",
        "description": "An ANOMALY warning adds a controller approval (DESIGN §8): analyst + two controllers.",
        "subject_type": "invoice",
        "requires_warning": "ANOMALY",
        "priority": 10,
        "steps": [_role(ANALYST, 24), _role(CONTROLLER, 48), _role(CONTROLLER, 48)],
    },
    {
        "name": "Invoice under 10,000 for a client on credit hold",
        "description": "A credit hold routes the invoice to a controller (DESIGN §3.11); larger bands have one anyway.",
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


def seed(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Step = apps.get_model("approvals", "ApprovalStep")
    for spec in POLICIES:
        spec = dict(spec)
        steps = spec.pop("steps")
        policy, created = Policy.objects.get_or_create(name=spec.pop("name"), defaults=spec)
        if not created:
            continue
        for order, step in enumerate(steps, start=1):
            Step.objects.create(policy=policy, order=order, **step)


def unseed(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Request = apps.get_model("approvals", "ApprovalRequest")
    names = [spec["name"] for spec in POLICIES]
    used = set(Request.objects.filter(policy__name__in=names).values_list("policy__name", flat=True))
    Policy.objects.filter(name__in=set(names) - used).delete()


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
