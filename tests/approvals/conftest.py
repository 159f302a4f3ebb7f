"""Fixtures for the approval engine: people in roles and subjects awaiting approval.

The default policies come from migration approvals.0002, so every test starts
with them (transactional tests keep them with `serialized_rollback=True`).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from approvals.services.defaults import ensure_approval_defaults
from billing.models import Invoice
from tests.factories import (
    ChangeOrderFactory,
    ContractFactory,
    InvoiceFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)


@pytest.fixture(autouse=True)
def default_policies(request):
    """The default policies and schedules, restored if a transactional test flushed them (as post_migrate would)."""
    if request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("_django_db_helper")  # database access as the test's django_db marker sets it up
    ensure_approval_defaults()


@pytest.fixture
def preparer():
    return UserFactory(username="preparer", groups=["finance_analyst"])


@pytest.fixture
def analyst():
    return UserFactory(username="analyst", groups=["finance_analyst"])


@pytest.fixture
def controller():
    return UserFactory(username="controller", groups=["finance_controller"])


@pytest.fixture
def controller2():
    return UserFactory(username="controller2", groups=["finance_controller"])


def pending_invoice(total: str | Decimal = "5000.00", **kwargs) -> Invoice:
    """An invoice awaiting approval (as a billing run leaves it)."""
    total = Decimal(total)
    return InvoiceFactory(status="pending_approval", subtotal=total, total=total, **kwargs)


def credit_note(total: str = "500.00", **kwargs) -> Invoice:
    """A credit note awaiting approval, its amount reserved on the original (as `credit_note_create` does)."""
    original = InvoiceFactory(
        status="posted",
        number=f"DE-2025-{Invoice.objects.count() + 1:06d}",
        subtotal=Decimal(total),
        total=Decimal(total),
        credited_amount=Decimal(total),
    )
    return InvoiceFactory(
        kind="credit_note",
        credit_of=original,
        contract=original.contract,
        status="pending_approval",
        subtotal=Decimal(total),
        total=Decimal(total),
        **kwargs,
    )


def submitted_time(**kwargs):
    return TimeEntryFactory(status="submitted", **kwargs)


def completed_milestone(*, completed_by=None, **kwargs):
    milestone = MilestoneFactory(status="completed", **kwargs)
    milestone.completed_by = completed_by or milestone.project.project_manager
    milestone.save(update_fields=["completed_by"])
    return milestone


def submitted_change_order(*, cap: str | None = "100000.00", cap_delta: str = "5000.00", submitted_by=None):
    contract = ContractFactory(cap=Decimal(cap) if cap is not None else None)
    project = ProjectFactory(contract=contract)
    change_order = ChangeOrderFactory(
        contract=contract,
        cap_delta=Decimal(cap_delta),
        status="submitted",
        submitted_by=submitted_by or project.project_manager,
    )
    return change_order


def person_of(user):
    return PersonFactory(user=user)
