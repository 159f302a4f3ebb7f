"""Delegation (out of office): a delegate decides approvals on behalf of the delegator.

Only an eligible delegate may be chosen (`approvals.services.eligibility`): never an
auditor, a consultant without an approving role, or an API service user. The
engine checks the delegate again at every decision (roles change).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from approvals.models import Delegation
from approvals.services.eligibility import delegate_refusal, eligible_delegates
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from kernel.roles import BILLING_ADMIN, FINANCE_CONTROLLER, has_any_role, user_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any


def _may_manage(user: Any, delegator: Any) -> bool:
    """Users delegate their own approvals; a billing admin or controller may set one up for an absent colleague."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.pk == delegator.pk or user.is_superuser or has_any_role(user, {BILLING_ADMIN, FINANCE_CONTROLLER})


def delegation_check(*, delegator: User, delegate: User, starts_on: date, ends_on: date, user: User) -> None:
    """Raise unless `user` may let `delegate` act for `delegator` over these dates (also for admin's form)."""
    if not _may_manage(user, delegator):
        raise PermissionDeniedError(
            "You can only delegate your own approvals (billing admins and controllers may set up others')."
        )
    errors: dict[str, list[str]] = {}
    if delegate.pk == delegator.pk:
        errors["delegate"] = ["Choose someone else."]
    else:
        refusal = delegate_refusal(delegate, user_roles(delegate) if delegate.is_active else ())
        if refusal:
            errors["delegate"] = [refusal]
    if ends_on < starts_on:
        errors["ends_on"] = ["Must be on or after the start."]
    elif ends_on < timezone.localdate():
        errors["ends_on"] = ["The delegation would already be over."]
    if errors:
        message = " ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        raise ApplicationError(message, code="invalid", field_errors=errors)


def delegation_create(
    *, delegator: User, delegate: User, starts_on: date, ends_on: date, reason: str = "", user: User
) -> Delegation:
    """Let `delegate` act for `delegator` from `starts_on` to `ends_on` (inclusive).

    Delegation is one hop: a delegate does not pass on what was delegated to them.
    """
    delegation_check(delegator=delegator, delegate=delegate, starts_on=starts_on, ends_on=ends_on, user=user)
    with transaction.atomic():
        delegation = Delegation(
            delegator=delegator,
            delegate=delegate,
            starts_on=starts_on,
            ends_on=ends_on,
            reason=(reason or "").strip()[:200],
            created_by=user,
        )
        save_audited(delegation, user=user, reason="Delegation created")
    return delegation


def delegate_choices(*, delegator: User) -> Any:
    """The users `delegator` may choose as delegate (everyone eligible but themselves), by name."""
    return eligible_delegates().exclude(pk=delegator.pk).order_by("first_name", "last_name", "username")


def delegation_end(*, delegation: Delegation, user: User, on: date | None = None) -> Delegation | None:
    """End a delegation early (back in office): valid up to and including `on` (default yesterday).

    A delegation that has not started by then is withdrawn altogether (None; its history keeps it).
    """
    if not _may_manage(user, delegation.delegator):
        raise PermissionDeniedError("Only the delegator, a billing admin or a controller can end this delegation.")
    on = on or timezone.localdate() - timedelta(days=1)
    with transaction.atomic():
        locked = Delegation.objects.select_for_update().get(pk=delegation.pk)
        if locked.ends_on <= on:
            return locked
        locked._history_user = user
        locked._change_reason = "Delegation withdrawn"
        if on < locked.starts_on:
            locked.delete()
            return None
        locked.ends_on = on
        save_audited(locked, user=user, reason="Delegation ended early")
    return locked
