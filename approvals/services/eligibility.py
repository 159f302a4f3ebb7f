"""Who may ever act as a delegate, and which of a delegate's roles a step accepts (docs/rules/approvals.md).

A delegation hands over approval power, so the delegate must be someone who
could hold it: an active user with an approving role (project manager, finance
analyst or controller, billing admin). Auditors change nothing, consultants
approve nothing, and API service users are machines: none of them is ever a
delegate. This is checked when a delegation is created (service, form, admin)
and again at every decision, because roles change after the delegation.

Service users belong to the integrations app, which the engine does not import:
it registers a source of their ids at start-up (`register_service_accounts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import CharField, QuerySet, Value

from approvals.models import ApprovalStep
from kernel.roles import AUDITOR, BILLING_ADMIN, FINANCE_ROLES, PROJECT_MANAGER

Kind = ApprovalStep.ApproverKind

#: Roles that can decide approvals; a delegate must hold one (and one the step accepts, at decision time).
DELEGATE_ROLES = FINANCE_ROLES | {PROJECT_MANAGER, BILLING_ADMIN}
#: Roles that bar a user from ever deciding as a delegate, whatever else they hold.
NEVER_DELEGATE_ROLES = frozenset({AUDITOR})

_service_account_sources: list[Callable[[], QuerySet]] = []


def register_service_accounts(source: Callable[[], QuerySet]) -> None:
    """Register a callable returning the queryset of users that are service accounts (never delegates)."""
    if source not in _service_account_sources:
        _service_account_sources.append(source)


def service_account_ids(user_ids: Iterable[int]) -> set[int]:
    """Which of `user_ids` are service accounts (one query per registered source)."""
    user_ids = set(user_ids)
    found: set[int] = set()
    if not user_ids:
        return found
    for source in _service_account_sources:
        found.update(source().filter(pk__in=user_ids).values_list("pk", flat=True))
    return found


def service_account_marks(user_id: int, *, mark: str) -> list[QuerySet]:
    """Per source, a query of one row holding `mark` if `user_id` is a service account: to union with a read."""
    return [
        source().filter(pk=user_id).order_by().annotate(mark=Value(mark, output_field=CharField())).values_list(
            "mark", flat=True
        )
        for source in _service_account_sources
    ]


def delegate_refusal(user: Any, roles: Iterable[str], *, is_service_account: bool | None = None) -> str | None:
    """Why `user` (holding `roles` now) can never be a delegate, or None when they can be."""
    name = (user.get_full_name() if hasattr(user, "get_full_name") else "") or user.get_username()
    roles = set(roles)
    if not user.is_active:
        return f"{name}'s account is inactive."
    if is_service_account is None:
        is_service_account = bool(service_account_ids({user.pk}))
    if is_service_account:
        return f"{name} is an API service user; machines are never delegates."
    if roles & NEVER_DELEGATE_ROLES:
        return f"{name} is an auditor; auditors change nothing, so they are never delegates."
    if not roles & DELEGATE_ROLES:
        return f"{name} holds no approving role (project manager, finance or billing admin), so cannot be a delegate."
    return None


def eligible_delegates() -> QuerySet:
    """Users who may be chosen as delegates (for the delegation form)."""
    users = (
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=DELEGATE_ROLES)
        .exclude(groups__name__in=NEVER_DELEGATE_ROLES)
    )
    for source in _service_account_sources:
        users = users.exclude(pk__in=source().values("pk"))
    return users.distinct()


def accepted_delegate_roles(step: ApprovalStep, *, principal_roles: Iterable[str]) -> frozenset[str]:
    """The roles a delegate must hold (one of) to decide `step` for a principal holding `principal_roles`.

    A role step accepts its role, a PM step project managers, a named-user step the
    approving roles the named user holds; every step also accepts its escalation role
    (the role that takes it over when it is overdue). The principal must still be one
    of the step's approvers now; this only says what the delegate must hold.
    """
    principal_roles = set(principal_roles)
    accepted: set[str] = set()
    if step.approver_kind == Kind.ROLE:
        accepted.add(step.role)
    elif step.approver_kind == Kind.PROJECT_MANAGER:
        accepted.add(PROJECT_MANAGER)
    elif step.approver_kind == Kind.USER:
        accepted.update(principal_roles & DELEGATE_ROLES)
    if step.escalation_role:
        accepted.add(step.escalation_role)
    return frozenset(accepted - NEVER_DELEGATE_ROLES)
