"""Override of a pending approval route: four eyes, a reason, and a decision on every skipped step.

No single person skips a policy route (docs/rules/approvals.md). A finance controller *requests*
an override with a mandatory reason (`approval_override_request`); a *second*,
different finance controller confirms it (`approval_override_confirm`). Both must
be free of segregation-of-duties bars (not the preparer, not someone who already
decided a step of the request), both are checked when they act (roles change),
and a policy may forbid overrides altogether (`ApprovalPolicy.allow_override`).

Confirming records an approval on every step not yet decided, each pointing at
the override (so the route shows who skipped which step, when and why), approves
the request and applies the approval to the subject through its own service, in
one transaction. A pending override lapses when the request is settled otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import ApprovalDecision, ApprovalOverride, ApprovalRequest
from approvals.registry import subject_label
from approvals.services.eligibility import service_account_ids
from approvals.services.requests import (
    _barred,
    _lock_request,
    _require_awaiting_subject,
    display_name,
)
from approvals.services.subjects import apply_approval, lock_subject, subject_model
from kernel.audit import save_audited
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError, SegregationOfDutiesError
from kernel.roles import FINANCE_CONTROLLER, user_roles
from kernel.workflow import apply_transition, refresh_caller, require_reason

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any

Status = ApprovalRequest.Status
OverrideStatus = ApprovalOverride.Status


def _require_controller(user: Any, action: str) -> None:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        raise PermissionDeniedError(f"Sign in with an active account to {action}.")
    if FINANCE_CONTROLLER not in user_roles(user) or service_account_ids({user.pk}):
        raise PermissionDeniedError(f"Only a finance controller may {action}.")


def _require_pending(locked: ApprovalRequest) -> None:
    if locked.status != Status.PENDING:
        raise ConflictError(
            f"This approval is {locked.get_status_display().lower()}; there is no route left to override.",
            code="not_pending",
        )


def _require_allowed(locked: ApprovalRequest) -> None:
    if not locked.policy.allow_override:
        raise PermissionDeniedError(
            f"Policy '{locked.policy}' forbids overrides: every step of its route must be decided.",
            code="override_forbidden",
        )


def _require_not_barred(locked: ApprovalRequest, subject: Any, user: Any, action: str) -> None:
    barred = _barred(locked, subject)
    if user.pk in barred:
        raise SegregationOfDutiesError(f"{barred[user.pk](None)}; another controller must {action}.")


def _lock(request: ApprovalRequest) -> tuple[ApprovalRequest, Any]:
    """Subject, then request: the order `approval_decide` locks in."""
    subject = lock_subject(subject_model(request.content_type_id), request.object_id)
    return _lock_request(request), subject


def _check_may_request(locked: ApprovalRequest, subject: Any, user: Any) -> None:
    _require_controller(user, "request an override of an approval route")
    _require_pending(locked)
    _require_awaiting_subject(locked, subject)
    _require_allowed(locked)
    _require_not_barred(locked, subject, user, "request the override")


def _check_may_confirm(current: ApprovalOverride, locked: ApprovalRequest, subject: Any, user: Any) -> None:
    _require_controller(user, "confirm an override of an approval route")
    if current.status != OverrideStatus.PENDING:
        raise ConflictError(f"This override is {current.get_status_display().lower()}.", code="not_pending")
    _require_pending(locked)
    _require_awaiting_subject(locked, subject)
    if current.requested_by_id == user.pk:
        raise SegregationOfDutiesError(
            "You requested this override; a second, different finance controller must confirm it (four eyes).",
        )
    _require_allowed(locked)
    _require_not_barred(locked, subject, user, "confirm the override")
    requester = current.requested_by
    if not requester.is_active or FINANCE_CONTROLLER not in user_roles(requester):
        raise PermissionDeniedError(
            f"{display_name(requester)} is no longer a finance controller; their override request cannot be "
            "confirmed (withdraw it, and request a new one)."
        )
    _require_not_barred(locked, subject, requester, "request the override")


def override_request_refusal(*, request: ApprovalRequest, subject: Any, user: Any) -> str | None:
    """Why `user` may not request an override now (None: they may). Read-only, for screens."""
    try:
        _check_may_request(request, subject, user)
    except ApplicationError as exc:
        return exc.message
    return None


def override_confirm_refusal(*, override: ApprovalOverride, subject: Any, user: Any) -> str | None:
    """Why `user` may not confirm `override` now (None: they may). Read-only, for screens."""
    try:
        _check_may_confirm(override, override.request, subject, user)
    except ApplicationError as exc:
        return exc.message
    return None


def pending_override(request: ApprovalRequest) -> ApprovalOverride | None:
    return (
        ApprovalOverride.objects.filter(request=request, status=OverrideStatus.PENDING)
        .select_related("requested_by")
        .first()
    )


def approval_override_request(*, request: ApprovalRequest, user: User, reason: str) -> ApprovalOverride:
    """A controller asks to skip the rest of the route; a second controller must confirm."""
    reason = require_reason(reason, "request an override of the approval route")
    with transaction.atomic():
        locked, subject = _lock(request)
        _check_may_request(locked, subject, user)
        override = ApprovalOverride(request=locked, requested_by=user, reason=reason, from_step=locked.current_step)
        try:
            with transaction.atomic():
                save_audited(override, user=user, reason=f"Override requested: {reason}")
        except IntegrityError:
            waiting = pending_override(locked)
            if waiting is None:
                raise
            raise ConflictError(
                f"{display_name(waiting.requested_by)} already requested an override of this route; "
                "another controller confirms or withdraws it.",
                code="override_pending",
            ) from None
        save_audited(locked, user=user, reason=f"Override requested by {display_name(user)}")
    return override


def approval_override_confirm(*, override: ApprovalOverride, user: User, comment: str = "") -> ApprovalRequest:
    """The second controller confirms: every undecided step is approved as overridden; the subject is approved."""
    comment = (comment or "").strip()
    request = override.request
    with transaction.atomic():
        locked, subject = _lock(request)
        current = ApprovalOverride.objects.select_for_update().select_related("requested_by").get(pk=override.pk)
        _check_may_confirm(current, locked, subject, user)
        requester = current.requested_by
        now = timezone.now()
        decided = set(locked.decisions.values_list("step_order", flat=True))
        steps = [s for s in locked.policy.steps.order_by("order") if s.order >= locked.current_step]
        skipped = [s for s in steps if s.order not in decided]
        if not skipped:
            raise ApplicationError("No step is left to override.", code="nothing_to_override")
        why = f"Override requested by {display_name(requester)}, confirmed by {display_name(user)}: {current.reason}"
        for step in skipped:
            save_audited(
                ApprovalDecision(
                    request=locked,
                    step_order=step.order,
                    approver=user,
                    decision=ApprovalDecision.Decision.APPROVE,
                    comment=why[:1000] + (f" — {comment}" if comment else ""),
                    override=current,
                    step_opened_at=None,  # never opened for a decision: kept out of approval latency
                    decided_at=now,
                ),
                user=user,
                reason=f"Step {step.order}: approved by override",
            )
        apply_transition(current, "confirm", user=user, reason=comment or "Confirmed", label="the override")
        current.confirmed_by, current.confirmed_at, current.comment = user, now, comment
        save_audited(current, user=user, reason="Override confirmed")
        apply_transition(locked, "approve", user=user, reason=why, label=f"approval {locked.pk}")
        locked.decided_at = now
        locked.outcome_reason = why
        steps_text = ", ".join(str(s.order) for s in skipped)
        save_audited(locked, user=user, reason=f"Route overridden (steps {steps_text}); approved")
        apply_approval(subject, user=user, comment=why[:1000])
    refresh_caller(request, locked)
    return locked


def approval_override_withdraw(*, override: ApprovalOverride, user: User, reason: str) -> ApprovalOverride:
    """The requester, or another controller, withdraws an override awaiting confirmation."""
    reason = require_reason(reason, "withdraw an override request")
    _require_controller(user, "withdraw an override request")
    with transaction.atomic():
        current = ApprovalOverride.objects.select_for_update().get(pk=override.pk)
        apply_transition(current, "withdraw", user=user, reason=reason, label="the override")
        current.comment = reason
        save_audited(current, user=user, reason=f"Override withdrawn: {reason}")
    refresh_caller(override, current)
    return current


def override_label(override: ApprovalOverride) -> str:
    """'Override of invoice DRAFT-3 requested by Ann' for messages."""
    subject = override.request.subject
    what = subject_label(subject) if subject is not None else f"approval {override.request_id}"
    return f"Override of {what} requested by {display_name(override.requested_by)}"
