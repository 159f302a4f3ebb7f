"""Delegation (out of office): a delegate decides approvals on behalf of the delegator."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from approvals.models import Delegation
from billing.services.audit import save_audited
from portal.errors import ApplicationError, PermissionDeniedError
from portal.roles import BILLING_ADMIN, FINANCE_CONTROLLER, has_any_role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any


def _may_manage(user: Any, delegator: Any) -> bool:
    """Users delegate their own approvals; a billing admin or controller may set one up for an absent colleague."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.pk == delegator.pk or user.is_superuser or has_any_role(user, {BILLING_ADMIN, FINANCE_CONTROLLER})


def delegation_create(
    *, delegator: User, delegate: User, starts_on: date, ends_on: date, reason: str = "", user: User
) -> Delegation:
    """Let `delegate` act for `delegator` from `starts_on` to `ends_on` (inclusive).

    Delegation is one hop: a delegate does not pass on what was delegated to them.
    """
    if not _may_manage(user, delegator):
        raise PermissionDeniedError(
            "You can only delegate your own approvals (billing admins and controllers may set up others')."
        )
    errors: dict[str, list[str]] = {}
    if delegate.pk == delegator.pk:
        errors["delegate"] = ["Choose someone else."]
    elif not delegate.is_active:
        errors["delegate"] = ["This account is inactive."]
    if ends_on < starts_on:
        errors["ends_on"] = ["Must be on or after the start."]
    elif ends_on < timezone.localdate():
        errors["ends_on"] = ["The delegation would already be over."]
    if errors:
        message = " ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        raise ApplicationError(message, code="invalid", field_errors=errors)
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
