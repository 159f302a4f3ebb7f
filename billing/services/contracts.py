"""Contract lifecycle: draft → active ⇄ suspended → closed (billing admins, finance controllers).

A suspended contract takes no new work; a contract is only closed when none of
its projects is still running and no change order awaits a decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction

from billing import rules as billing_rules
from billing.models import ChangeOrder, Contract, Project
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from kernel.workflow import apply_transition, lock_for_update, refresh_caller

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any


def _check_closable(contract: Contract) -> None:
    running = list(
        contract.projects.filter(status__in=[Project.Status.ACTIVE, Project.Status.ON_HOLD]).values_list(
            "code", flat=True
        )
    )
    if running:
        raise ApplicationError(
            f"Contract {contract.code} still has running projects ({', '.join(running)}); complete them first.",
            code="projects_running",
        )
    if contract.change_orders.filter(status=ChangeOrder.Status.SUBMITTED).exists():
        raise ApplicationError(
            f"Contract {contract.code} has a change order awaiting a decision.", code="change_order_pending"
        )


def _transition(contract: Contract, transition: str, *, user: User, reason: str, audit_reason: str) -> Contract:
    with transaction.atomic():
        locked = lock_for_update(contract, "client")
        if not billing_rules.can_manage_contract.test(user, locked):
            raise PermissionDeniedError("Only a billing admin or a finance controller can change a contract's status.")
        if transition == "close":
            _check_closable(locked)
        reason = (reason or "").strip()
        apply_transition(locked, transition, user=user, reason=reason, label=f"contract {locked.code}")
        save_audited(locked, user=user, reason=reason or audit_reason)
    refresh_caller(contract, locked)
    return locked


def contract_activate(*, contract: Contract, user: User, reason: str = "") -> Contract:
    """Make a signed contract live so its projects can start."""
    return _transition(contract, "activate", user=user, reason=reason, audit_reason="Activated")


def contract_suspend(*, contract: Contract, user: User, reason: str = "") -> Contract:
    """Stop new work under the contract (e.g. while terms are renegotiated)."""
    return _transition(contract, "suspend", user=user, reason=reason, audit_reason="Suspended")


def contract_resume(*, contract: Contract, user: User, reason: str = "") -> Contract:
    return _transition(contract, "resume", user=user, reason=reason, audit_reason="Resumed")


def contract_close(*, contract: Contract, user: User, reason: str = "") -> Contract:
    """End the contract once its projects are done and no amendment is pending."""
    return _transition(contract, "close", user=user, reason=reason, audit_reason="Closed")
