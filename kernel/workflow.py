"""Workflow helpers shared by every app's state-changing services.

Each state change locks its row (`lock_for_update`), asks the FSM
(`apply_transition`, which names the actor and the reason in django-fsm-log),
refuses an unaudited rejection (`require_reason`) and reports model validation
in the one error shape (`full_clean_or_raise`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models
from django_fsm import FSMFieldMixin, TransitionNotAllowed

from kernel.errors import ApplicationError, InvalidTransitionError

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any

M = TypeVar("M", bound=models.Model)


def lock_for_update(obj: M, *related: str) -> M:
    """Re-read `obj` under a row lock so concurrent transitions of it serialize.

    Only the object's own row is locked (`of=self`), related rows are just read.
    """
    qs = type(obj)._default_manager.select_for_update(of=("self",))
    if related:
        qs = qs.select_related(*related)
    return qs.get(pk=obj.pk)


def refresh_caller(original: models.Model, updated: models.Model) -> None:
    """Keep the caller's instance in step with the saved row (FSM fields cannot be assigned)."""
    if original is not updated:
        original.refresh_from_db()


def apply_transition(obj: Any, transition: str, *, user: User, reason: str = "", label: str = "") -> None:
    """Run FSM transition `transition` on `obj` with the django-fsm-log actor and description."""
    method = getattr(obj, transition)
    try:
        method(by=user, description=reason or None)
    except TransitionNotAllowed as exc:
        what = label or f"{obj._meta.verbose_name} {obj.pk}"
        raise InvalidTransitionError(
            f"Cannot {transition.replace('_', ' ')} {what}: it is {obj.get_status_display().lower()}.",
        ) from exc


def require_reason(reason: str | None, action: str) -> str:
    """A rejection or reopening without a reason cannot be audited: refuse it."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(
            f"A reason is required to {action}.", code="reason_required", field_errors={"reason": ["Required."]}
        )
    return reason


def full_clean_or_raise(obj: models.Model, *, exclude: Iterable[str] = ()) -> None:
    """Model validation as an ApplicationError with field errors (one error shape).

    Protected FSM fields are skipped: `clean_fields` re-assigns every field, which
    django-fsm refuses for them (and transitions, not validation, guard the state).
    """
    fsm_fields = [f.name for f in obj._meta.concrete_fields if isinstance(f, FSMFieldMixin) and f.protected]
    try:
        obj.full_clean(exclude=[*exclude, *fsm_fields])
    except ValidationError as exc:
        field_errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        message = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in field_errors.items())
        raise ApplicationError(message, code="invalid", field_errors=field_errors) from exc
