"""`seed_demo`: the demo firm has the promised shape, and seeding twice changes nothing."""
from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

from billing.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo
from billing.models import (
    ChangeOrder,
    Client,
    Contract,
    ContractRate,
    Expense,
    FxRate,
    LegalEntity,
    Milestone,
    Person,
    Project,
    TimeEntry,
)

pytestmark = pytest.mark.django_db


def _counts() -> dict[str, int]:
    models = [*apps.get_app_config("billing").get_models(), *apps.get_app_config("approvals").get_models(),
              *apps.get_app_config("insights").get_models(), get_user_model()]
    return {m._meta.label: m._default_manager.count() for m in models}


def _quiet(_: str) -> None:
    pass


def test_seeding_twice_changes_nothing():
    out = StringIO()
    call_command("seed_demo", "--scale", "1", stdout=out)
    first = _counts()
    assert first["billing.TimeEntry"] > 10_000
    assert "demo-pass-2026" in out.getvalue()

    out = StringIO()
    call_command("seed_demo", "--scale", "1", stdout=out)

    assert _counts() == first
    assert "nothing to do" in out.getvalue()


def test_scale_one_has_the_promised_shape():
    seed_demo(scale=1, log=_quiet)

    assert set(LegalEntity.objects.values_list("code", "country", "currency")) == {
        ("NWB", "DE", "EUR"),
        ("TLL", "GB", "GBP"),
        ("HUD", "US", "USD"),
    }
    assert Client.objects.count() >= 35
    assert Client.objects.values("country").distinct().count() >= 6
    assert set(Contract.objects.values_list("billing_model", flat=True)) == {
        "time_and_materials",
        "fixed_fee",
        "retainer",
    }
    assert set(Project.objects.values_list("status", flat=True)) == {s.value for s in Project.Status}

    clients = list(Client.objects.all())
    problems = {c.code: c.master_data_problems() for c in clients}
    assert any("VAT id" in p for ps in problems.values() for p in ps)
    assert any("address" in p for ps in problems.values() for p in ps)
    assert sum(c.credit_hold for c in clients) == 1
    assert any(c.po_required for c in clients)
    # Every client without a deliberate problem has a valid VAT id (or none: US, a non-business).
    clean = [c for c in clients if not problems[c.code]]
    assert all(c.has_valid_vat_id for c in clean if c.vat_id)

    assert ChangeOrder.objects.filter(status="submitted").exists()
    assert ContractRate.objects.filter(change_order__status="approved").exists()
    assert Milestone.objects.filter(status="approved", project__contract__billing_model="fixed_fee").exists()
    statuses = set(TimeEntry.objects.values_list("status", flat=True))
    assert {"approved", "submitted", "draft", "rejected"} <= statuses
    # The revenue demo books the invoiced history's time on the prior-year ("-PY") contracts; the
    # current work, which the demo's billing runs are for, is not invoiced yet.
    current = TimeEntry.objects.exclude(project__contract__code__endswith="-PY")
    assert not current.filter(status="invoiced").exists()
    assert not TimeEntry.objects.filter(status="invoiced", invoice_line__isnull=True).exists()
    months = set(current.values_list("date__year", "date__month").distinct())
    assert months == {(2026, 8), (2026, 9), (2026, 10)}
    assert Expense.objects.filter(status="approved").exists()
    assert FxRate.objects.filter(from_currency="GBP", to_currency="EUR").exists()
    assert TimeEntry.history.exists()  # creation history is written for the bulk rows too


def test_one_login_per_role_in_its_group():
    seed_demo(scale=1, log=_quiet)
    user_model = get_user_model()

    expected_groups = {
        "consultant": "consultant",
        "pm": "project_manager",
        "analyst": "finance_analyst",
        "analyst2": "finance_analyst",
        "controller": "finance_controller",
        "controller2": "finance_controller",
        "collections": "collections",
        "admin": "billing_admin",
        "auditor": "auditor",
    }
    assert {u.username: u.group for u in DEMO_USERS} == expected_groups
    users = {u.username: u for u in user_model.objects.filter(username__in=expected_groups)}
    assert users["consultant"].check_password(DEMO_PASSWORD)
    assert len({u.password for u in users.values()}) == 1  # one password for every demo login
    for username, group in expected_groups.items():
        user = users[username]
        assert user.groups.filter(name=group).exists()
        assert user.is_staff == (username not in ("consultant", "pm"))
    assert user_model.objects.get(username="admin").is_superuser

    consultant = Person.objects.get(user__username="consultant")
    assert consultant.time_entries.filter(status="rejected").exclude(rejection_reason="").exists()
    assert Project.objects.filter(project_manager__username="pm").count() >= 3


def test_a_larger_scale_adds_only_the_missing_blocks():
    seed_demo(scale=1, log=_quiet)
    clients = Client.objects.count()
    codes = set(Contract.objects.values_list("code", flat=True))

    seed_demo(scale=2, log=_quiet)

    assert Client.objects.count() == 2 * clients
    assert codes < set(Contract.objects.values_list("code", flat=True))


def test_every_persona_finds_work_in_their_queues():
    """What the README promises each demo login: real work waiting, decidable by that login."""
    from approvals.models import ApprovalRequest
    from approvals.selectors import my_approvals
    from approvals.services import check_decider
    from billing.models import BillingRun, Invoice
    from insights.models import InvoiceScore, RiskModel
    from kernel.errors import SegregationOfDutiesError

    seed_demo(scale=1, log=_quiet)
    users = {u.username: u for u in get_user_model().objects.filter(username__in=[u.username for u in DEMO_USERS])}
    assert users["analyst2"].check_password(DEMO_PASSWORD) and users["controller2"].check_password(DEMO_PASSWORD)

    # pm: milestones completed by someone else to approve, one planned to complete, weeks of time, change orders.
    pm = users["pm"]
    queue = list(my_approvals(pm))
    kinds = {r.subject_type for r in queue}
    assert {"milestone", "time_entry", "change_order"} <= kinds
    completed = Milestone.objects.filter(project__project_manager=pm, status="completed")
    assert completed.count() >= 2 and not completed.filter(completed_by=pm).exists()
    assert Milestone.objects.filter(project__project_manager=pm, status="planned", project__status="active").exists()
    weeks = set(TimeEntry.objects.filter(project__project_manager=pm, status="submitted")
                .values_list("date__week", flat=True))
    assert len(weeks) >= 2
    to_decide = ChangeOrder.objects.filter(contract__projects__project_manager=pm, status="submitted") \
        .exclude(submitted_by=pm).distinct()
    assert to_decide.exists()
    refused = ChangeOrder.objects.get(submitted_by=pm, status="rejected")
    assert refused.decision_reason
    own = ChangeOrder.objects.filter(submitted_by=pm, status="submitted").first()
    assert own is not None
    own_request = ApprovalRequest.objects.get(subject_type="change_order", object_id=own.pk, status="pending")
    with pytest.raises(SegregationOfDutiesError):
        check_decider(request=own_request, user=pm)

    # controllers: invoices past the analyst's step (prepared by analyst2, step 1 by analyst), one of three steps.
    at_controller = [r for r in my_approvals(users["controller"]) if r.subject_type == "invoice"]
    assert at_controller and all(r.current_step >= 2 for r in at_controller)
    assert {r.prepared_by_id for r in at_controller} == {users["analyst2"].pk}
    assert any(r.policy.steps.count() == 3 for r in at_controller)
    assert {r.pk for r in at_controller} == {r.pk for r in my_approvals(users["controller2"])
                                              if r.subject_type == "invoice"}
    for request in at_controller:
        assert request.decisions.get(step_order=1).approver == users["analyst"]
        assert Invoice.objects.get(pk=request.object_id).number is None  # numbered on the last approval

    # The dispute-risk model is trained, and what awaits approval or cash has its scores.
    assert RiskModel.objects.filter(is_active=True).exists()
    pending = Invoice.objects.filter(status="pending_approval")
    assert InvoiceScore.objects.filter(invoice__in=pending, risk_score__isnull=False).count() == pending.count()

    # History runs count the invoices they hold.
    runs = BillingRun.objects.all()
    assert runs.count() == 12
    for run in runs:
        invoices = Invoice.objects.filter(billing_run=run)
        assert run.summary["invoices"] == invoices.count() > 0, run
        assert sum(run.summary["by_status"].values()) == invoices.count()
        assert run.contracts_total == invoices.values("contract").distinct().count()
