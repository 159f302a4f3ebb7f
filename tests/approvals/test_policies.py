"""Which policy routes a subject: the default bands, FX, warnings, cap growth, priority and specificity."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from approvals.models import ApprovalPolicy, ApprovalStep
from approvals.services import approval_policy_for
from tests.approvals.conftest import (
    completed_milestone,
    credit_note,
    pending_invoice,
    submitted_change_order,
    submitted_time,
)
from tests.factories import (
    ChangeOrderFactory,
    ContractFactory,
    ExpenseFactory,
    FxRateFactory,
    InvoiceExceptionFactory,
    LegalEntityFactory,
)

pytestmark = pytest.mark.django_db


def _policy_name(subject) -> str | None:
    policy = approval_policy_for(subject)
    return policy.name if policy else None


def _roles(subject) -> list[str]:
    policy = approval_policy_for(subject)
    return [s.role or s.approver_kind for s in policy.steps.order_by("order")]


@pytest.mark.parametrize(
    ("total", "policy", "steps"),
    [
        ("0.01", "Invoice under 10,000", ["finance_analyst"]),
        ("9999.99", "Invoice under 10,000", ["finance_analyst"]),
        ("10000.00", "Invoice 10,000 to 100,000", ["finance_analyst", "finance_controller"]),
        ("99999.99", "Invoice 10,000 to 100,000", ["finance_analyst", "finance_controller"]),
        (
            "100000.00",
            "Invoice 100,000 and above",
            ["finance_analyst", "finance_controller", "finance_controller"],
        ),
        ("2500000.00", "Invoice 100,000 and above", ["finance_analyst", "finance_controller", "finance_controller"]),
    ],
)
def test_invoice_bands_in_entity_currency(total, policy, steps):
    invoice = pending_invoice(total)

    assert _policy_name(invoice) == policy
    assert _roles(invoice) == steps


def test_foreign_currency_invoice_is_converted_at_the_latest_rate_on_or_before_the_issue_date():
    contract = ContractFactory(currency="USD")
    invoice = pending_invoice("12000.00", contract=contract)  # issued 2025-04-01, EUR entity
    FxRateFactory(from_currency="USD", to_currency="EUR", date=datetime.date(2025, 3, 1), rate=Decimal("0.9"))
    FxRateFactory(from_currency="USD", to_currency="EUR", date=datetime.date(2025, 3, 31), rate=Decimal("0.8"))
    FxRateFactory(from_currency="USD", to_currency="EUR", date=datetime.date(2025, 4, 2), rate=Decimal("0.95"))

    # 12,000 USD × 0.8 (31 March) = 9,600 EUR; the rate of 2 April is after the issue date.
    assert _policy_name(invoice) == "Invoice under 10,000"


def test_foreign_currency_invoice_without_a_rate_counts_as_the_highest_band():
    contract = ContractFactory(currency="CHF")
    invoice = pending_invoice("100.00", contract=contract)
    FxRateFactory(from_currency="CHF", to_currency="EUR", date=datetime.date(2025, 4, 2), rate=Decimal("1.05"))

    assert _policy_name(invoice) == "Invoice 100,000 and above"


def test_anomaly_warning_adds_the_second_controller_at_any_amount():
    invoice = pending_invoice("800.00")
    InvoiceExceptionFactory(invoice=invoice, code="ANOMALY", severity="warning")

    assert _policy_name(invoice) == "Invoice flagged as an anomaly"
    assert _roles(invoice) == ["finance_analyst", "finance_controller", "finance_controller"]


def test_a_resolved_warning_no_longer_counts():
    invoice = pending_invoice("800.00")
    InvoiceExceptionFactory(invoice=invoice, code="ANOMALY", severity="warning", state="resolved")

    assert _policy_name(invoice) == "Invoice under 10,000"


def test_credit_hold_routes_a_small_invoice_to_a_controller_and_leaves_larger_bands_alone():
    small = pending_invoice("800.00")
    InvoiceExceptionFactory(invoice=small, code="CLIENT_ON_CREDIT_HOLD", severity="warning")
    large = pending_invoice("50000.00")
    InvoiceExceptionFactory(invoice=large, code="CLIENT_ON_CREDIT_HOLD", severity="warning")

    assert _roles(small) == ["finance_analyst", "finance_controller"]
    assert _policy_name(large) == "Invoice 10,000 to 100,000"


@pytest.mark.parametrize(
    ("make", "policy", "steps"),
    [
        (lambda: credit_note("250000.00"), "Credit note", ["finance_controller"]),
        (lambda: completed_milestone(), "Milestone", ["project_manager"]),
        (lambda: submitted_time(), "Time entry", ["project_manager"]),
        (lambda: ExpenseFactory(status="submitted"), "Expense", ["project_manager"]),
        (lambda: submitted_change_order(cap_delta="5000.00"), "Change order", ["project_manager"]),
    ],
    ids=["credit_note", "milestone", "time_entry", "expense", "change_order"],
)
def test_each_subject_type_has_its_default_policy(make, policy, steps):
    subject = make()

    assert _policy_name(subject) == policy
    assert _roles(subject) == steps


@pytest.mark.parametrize(
    ("cap_delta", "policy"),
    [
        ("20000.00", "Change order"),  # exactly 20 %: not over
        ("20000.01", "Change order growing the cap over 20 %"),
        ("-50000.00", "Change order"),
    ],
)
def test_change_order_adds_a_controller_when_the_cap_grows_over_20_percent(cap_delta, policy):
    change_order = submitted_change_order(cap="100000.00", cap_delta=cap_delta)

    assert _policy_name(change_order) == policy


def test_cap_growth_is_measured_against_the_cap_including_approved_change_orders():
    change_order = submitted_change_order(cap="100000.00", cap_delta="22000.00")
    ChangeOrderFactory(contract=change_order.contract, cap_delta=Decimal("20000.00"), status="approved")

    # 22,000 of 120,000 is 18.3 %.
    assert _policy_name(change_order) == "Change order"


def test_change_order_on_a_contract_without_cap_never_counts_as_cap_growth():
    change_order = submitted_change_order(cap=None, cap_delta="90000.00")

    assert _policy_name(change_order) == "Change order"


def _custom_policy(name, *, priority=100, **conditions) -> ApprovalPolicy:
    policy = ApprovalPolicy.objects.create(name=name, subject_type="invoice", priority=priority, **conditions)
    ApprovalStep.objects.create(policy=policy, order=1, approver_kind="role", role="finance_controller")
    return policy


def test_a_more_specific_policy_beats_a_general_one_of_the_same_priority():
    entity = LegalEntityFactory(code="NL01", country="NL")
    invoice = pending_invoice("500.00", contract=ContractFactory(entity=entity))
    _custom_policy("NL invoices under 10,000", entity=entity, max_amount=Decimal("10000"))

    assert _policy_name(invoice) == "NL invoices under 10,000"
    assert _policy_name(pending_invoice("500.00")) == "Invoice under 10,000"


def test_lower_priority_number_wins_over_specificity():
    invoice = pending_invoice("500.00", contract=ContractFactory(billing_model="retainer", retainer=True))
    _custom_policy("Retainer invoices", priority=50, billing_model="retainer")
    _custom_policy("Client-specific", priority=60, client=invoice.client, max_amount=Decimal("1000"))

    assert _policy_name(invoice) == "Retainer invoices"


def test_inactive_policies_and_policies_without_steps_are_ignored():
    invoice = pending_invoice("500.00")
    _custom_policy("Switched off", priority=1).__class__.objects.filter(name="Switched off").update(active=False)
    ApprovalPolicy.objects.create(name="No steps", subject_type="invoice", priority=1)

    assert _policy_name(invoice) == "Invoice under 10,000"


def test_no_matching_policy_gives_none():
    ApprovalPolicy.objects.filter(subject_type="expense").update(active=False)

    assert approval_policy_for(ExpenseFactory(status="submitted")) is None


def test_default_policies_are_seeded_once_with_ordered_steps():
    # Approvals' eleven defaults for billing's subjects, and revenue's estimate policy.
    assert ApprovalPolicy.objects.count() == 12
    for policy in ApprovalPolicy.objects.prefetch_related("steps"):
        orders = [s.order for s in policy.steps.all()]
        assert orders == list(range(1, len(orders) + 1)), policy
        assert all(s.escalation_role == "finance_controller" for s in policy.steps.all())


def test_defaults_come_back_after_a_flush_without_undoing_edits():
    from django_q.models import Schedule

    from approvals.services.defaults import ensure_approval_defaults

    ApprovalPolicy.objects.filter(name="Credit note").update(priority=5)
    ensure_approval_defaults()
    assert ApprovalPolicy.objects.get(name="Credit note").priority == 5  # edits are kept
    assert ApprovalPolicy.objects.count() == 12

    ApprovalStep.objects.all().delete()
    ApprovalPolicy.objects.all().delete()
    Schedule.objects.filter(func__startswith="approvals.tasks.").delete()
    ensure_approval_defaults()

    assert ApprovalPolicy.objects.count() == 11
    assert ApprovalStep.objects.filter(policy__name="Invoice 100,000 and above").count() == 3
    assert Schedule.objects.filter(func__startswith="approvals.tasks.").count() == 3
