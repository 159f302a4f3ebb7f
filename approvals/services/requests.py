"""Approval requests: open (one or thousands), decide, cancel, escalate.

Each use case is one transaction. Deciding locks the subject row, then the
request row (the order a billing service that calls into this app would use),
re-checks that the step the caller saw is still open, and records the decision
under the `(request, step_order)` unique constraint, so two people deciding the
same step at the same moment yield exactly one decision and one ConflictError.
The last approval, or any rejection, is applied to the subject through the
subject's own billing service, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from approvals.models import ApprovalDecision, ApprovalOverride, ApprovalPolicy, ApprovalRequest, ApprovalStep
from approvals.registry import SubjectFacts, handler_for, subject_label
from approvals.services.eligibility import (
    accepted_delegate_roles,
    delegate_refusal,
    service_account_ids,
    service_account_marks,
)
from approvals.services.policies import active_policies, match_policy
from approvals.services.routing import (
    active_delegations_to,
    designated_all_barred,
    request_pm_ids,
    step_routing,
    user_roles_by_id,
)
from approvals.services.subjects import (
    apply_approval,
    apply_rejection,
    awaiting_status,
    collect_facts,
    is_awaiting,
    lock_subject,
    preparer_id,
    preparer_phrase,
    subject_model,
)
from kernel.audit import save_audited
from kernel.bulk import copy_create_with_history
from kernel.errors import (
    ApplicationError,
    ConflictError,
    InvalidTransitionError,
    PermissionDeniedError,
    SegregationOfDutiesError,
)
from kernel.fsm_log import buffered_state_logs
from kernel.roles import (
    BILLING_ADMIN,
    FINANCE_ROLES,
    has_any_role,
    remember_roles,
    roles_query,
    roles_read_once,
    user_roles,
)
from kernel.workflow import apply_transition, refresh_caller, require_reason

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any

Status = ApprovalRequest.Status
Decision = ApprovalDecision.Decision
Reason = ApprovalRequest.EscalationReason


def display_name(user: Any) -> str:
    if user is None:
        return "the system"
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def _is_active_user(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def _content_type_id(model: type) -> int:
    return ContentType.objects.get_for_model(model).pk


# --- opening ---------------------------------------------------------------------------------------


def _require_awaiting(facts: Sequence[SubjectFacts]) -> None:
    waiting_elsewhere = [f for f in facts if not f.awaiting]
    if waiting_elsewhere:
        listed = ", ".join(f"{f.label} is {f.subject.get_status_display().lower()}" for f in waiting_elsewhere[:10])
        raise InvalidTransitionError(
            f"Only subjects awaiting approval can be routed for approval: {listed}.", code="not_awaiting_approval"
        )


def _no_policy_error(facts: Sequence[SubjectFacts]) -> ApplicationError:
    listed = ", ".join(f.label for f in facts[:10])
    return ApplicationError(
        f"No active approval policy matches {listed}. A billing admin must add or activate one.", code="no_policy"
    )


def _open_step(request: ApprovalRequest, step: ApprovalStep, *, now: datetime, pm_ids, barred: Iterable[int]) -> None:
    """Make `step` the open step: its SLA starts now; straight to the escalation role if nobody else may decide."""
    request.current_step = step.order
    request.step_opened_at = now
    request.sla_due_at = now + timedelta(hours=step.sla_hours)
    request.escalated, request.escalated_at, request.escalation_reason = False, None, Reason.NONE
    if step.escalation_role and designated_all_barred(step, pm_ids=pm_ids, barred=barred):
        request.escalated, request.escalated_at, request.escalation_reason = True, now, Reason.NO_ELIGIBLE_APPROVER


def _build_request(facts: SubjectFacts, policy: ApprovalPolicy, *, user: Any, now: datetime) -> ApprovalRequest:
    request = ApprovalRequest(
        content_type_id=_content_type_id(type(facts.subject)),
        object_id=facts.subject.pk,
        subject_type=facts.subject_type,
        policy=policy,
        requested_by=user if getattr(user, "pk", None) else None,
        prepared_by_id=facts.prepared_by_id,
        contract_id=facts.contract_id,
        project_id=facts.project_id,
        amount=facts.amount,
        currency=facts.currency,
        entity_amount=facts.entity_amount,
        warning_codes=sorted(facts.warnings),
    )
    first_step = policy.steps.all()[0]
    _open_step(request, first_step, now=now, pm_ids=facts.pm_ids, barred={facts.prepared_by_id} - {None})
    return request


def _pending_request(content_type_id: int, object_id: int) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(
        content_type_id=content_type_id, object_id=object_id, status=Status.PENDING
    ).first()


def approval_request_open(*, subject: Any, user: User | None = None) -> ApprovalRequest:
    """Route a subject awaiting approval to its policy's first step; idempotent.

    Returns the subject's pending request when it already has one (also when a
    concurrent call opened it a moment earlier).
    """
    content_type_id = _content_type_id(type(subject))
    existing = _pending_request(content_type_id, subject.pk)
    if existing is not None:
        return existing
    with transaction.atomic():
        facts = collect_facts([subject])
        _require_awaiting(facts)
        policy = match_policy(active_policies([facts[0].subject_type]), facts[0])
        if policy is None:
            raise _no_policy_error(facts)
        request = _build_request(facts[0], policy, user=user, now=timezone.now())
        try:
            with transaction.atomic():
                save_audited(request, user=user, reason=f"Approval requested ({policy.name})")
        except IntegrityError:
            existing = _pending_request(content_type_id, subject.pk)
            if existing is None:
                raise
            return existing
    return request


def approval_requests_open_bulk(*, subjects: Iterable[Any], user: User | None = None, batch_size: int = 1000) -> int:
    """Open the requests of many subjects (a billing run's invoices) in a bounded number of queries.

    Subjects that already have a pending request are skipped. All or nothing: a
    subject not awaiting approval, or one no policy matches, refuses the batch.
    Returns how many requests were opened.
    """
    keyed: dict[tuple[int, int], Any] = {}
    for subject in subjects:
        keyed.setdefault((_content_type_id(type(subject)), subject.pk), subject)
    if not keyed:
        return 0
    actor = user if getattr(user, "pk", None) else None
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                existing = set(
                    ApprovalRequest.objects.filter(
                        status=Status.PENDING,
                        content_type_id__in={ct for ct, _ in keyed},
                        object_id__in={pk for _, pk in keyed},
                    ).values_list("content_type_id", "object_id")
                )
                todo = [subject for key, subject in keyed.items() if key not in existing]
                if not todo:
                    return 0
                facts = collect_facts(todo)
                _require_awaiting(facts)
                policies = active_policies({f.subject_type for f in facts})
                now = timezone.now()
                matched = [(f, match_policy(policies, f)) for f in facts]
                unrouted = [f for f, policy in matched if policy is None]
                if unrouted:
                    raise _no_policy_error(unrouted)
                requests = [_build_request(f, policy, user=actor, now=now) for f, policy in matched]
                copy_create_with_history(
                    requests, ApprovalRequest, actor=actor, reason="Approval requested", batch_size=batch_size
                )
                return len(requests)
        except IntegrityError as exc:
            # A concurrent opener got some of them first: skip those and try once more.
            if attempt == 2:
                raise ConflictError("Approval requests were being opened concurrently; try again.") from exc
    return 0  # pragma: no cover - the loop returns or raises


# --- deciding --------------------------------------------------------------------------------------


def _lock_request(request: ApprovalRequest) -> ApprovalRequest:
    return ApprovalRequest.objects.select_for_update(of=("self",)).select_related("policy").get(pk=request.pk)


def _conflict(request: ApprovalRequest, step: int) -> ConflictError:
    """The error for a step someone else settled first, naming them."""
    decided = request.decisions.filter(step_order=step).select_related("approver", "on_behalf_of").first()
    if decided is not None:
        who = display_name(decided.approver)
        if decided.on_behalf_of_id:
            who += f" on behalf of {display_name(decided.on_behalf_of)}"
        verb = "approved" if decided.decision == Decision.APPROVE else "rejected"
        return ConflictError(
            f"Step {step} of this approval was already decided by {who} ({verb} at "
            f"{timezone.localtime(decided.decided_at):%Y-%m-%d %H:%M})."
        )
    return ConflictError(
        f"This approval is already {request.get_status_display().lower()}; there is nothing to decide."
    )


def _check_still_open(locked: ApprovalRequest, expected_step: int | None) -> None:
    """The caller decides the step they saw; if someone got there first, say who."""
    if locked.status == Status.PENDING and (expected_step is None or locked.current_step == expected_step):
        return
    raise _conflict(locked, expected_step if expected_step is not None else locked.current_step)


def _current_step(request: ApprovalRequest, steps: Sequence[ApprovalStep] | None = None) -> ApprovalStep:
    """The open step, from `steps` when the caller has the policy's steps already."""
    if steps is None:
        step = request.policy.steps.select_related("user").filter(order=request.current_step).first()
    else:
        step = next((s for s in steps if s.order == request.current_step), None)
    if step is None:
        raise ApplicationError(
            f"Step {request.current_step} no longer exists in policy '{request.policy}'; cancel the request "
            "and open it again.",
            code="policy_changed",
        )
    return step


def _policy_steps(request: ApprovalRequest) -> list[ApprovalStep]:
    """The policy's steps with their users, in order: one read serves the open step and the next one."""
    return list(request.policy.steps.select_related("user").order_by("order"))


def _next_step(request: ApprovalRequest, steps: Sequence[ApprovalStep]) -> ApprovalStep | None:
    """The step after the open one, from the steps already read under the request's lock."""
    return next((s for s in steps if s.order > request.current_step), None)


def _routing_pm_ids(request: ApprovalRequest, steps: Iterable[ApprovalStep | None]) -> frozenset[int]:
    """The request's PMs when one of `steps` is a PM step; none otherwise, without a query.

    Only a PM step routes to (and bars) the PMs (`step_routing`, `designated_all_barred`),
    so a decision on role or user steps need not read them.
    """
    if any(s is not None and s.approver_kind == ApprovalStep.ApproverKind.PROJECT_MANAGER for s in steps):
        return request_pm_ids(request)
    return frozenset()


Phrase = Callable[[str | None], str]


def _barred(
    request: ApprovalRequest, subject: Any, decisions: Iterable[ApprovalDecision] | None = None
) -> dict[int, Phrase]:
    """Who segregation of duties bars from this request, with why (2nd person without a name).

    `decisions`: the request's decisions when the caller loaded them already (bulk decisions).
    """
    barred: dict[int, Phrase] = {}
    for user_id in (preparer_id(subject), request.prepared_by_id):
        if user_id is not None and user_id not in barred:
            barred[user_id] = lambda name=None: preparer_phrase(subject, name=name)
    for decision in request.decisions.all() if decisions is None else decisions:
        for user_id in (decision.approver_id, decision.on_behalf_of_id):
            if user_id is not None and user_id not in barred:
                barred[user_id] = lambda name=None, n=decision.step_order: (
                    f"{name or 'You'} already decided step {n} of this approval"
                )
    return barred


def _not_yours(request: ApprovalRequest, step: ApprovalStep, subject: Any) -> PermissionDeniedError:
    who = step.approver_label
    if request.escalated and step.escalation_role:
        who += f" or, as it is escalated, {step.get_escalation_role_display().lower()}"
    return PermissionDeniedError(
        f"Step {step.order} of the approval of {subject_label(subject)} is for {who.lower()}; you are not one of "
        "them and hold no delegation from one of them."
    )


#: The row `service_account_marks` adds to the roles read: never a role (roles are kernel.roles.ALL_ROLES).
_SERVICE_ACCOUNT = "~service account"


class _Decider:
    """What the engine reads about the deciding user, read once per decision (or per bulk decision).

    Roles, the service-account flag and the delegations held today are read afresh
    for every call of `approval_decide` / `approval_decide_bulk`, never cached longer;
    a bulk decision hands the roles to the subjects' bulk callback in the same
    transaction (`apply_approval_many`), so they are read once per call.
    """

    def __init__(self, user: Any, *, today: date) -> None:
        self.user = user
        self.today = today
        self._service: bool | None = None
        self._roles: set[str] | None = None
        self._delegations: tuple[list[Any], dict[int, set[str]]] | None = None

    @property
    def is_service_account(self) -> bool:
        if self._service is None:
            if self._roles is None:
                self._read_roles_and_service_flag()
            else:
                self._service = bool(service_account_ids({self.user.pk}))
        return bool(self._service)

    @property
    def roles(self) -> set[str]:
        if self._roles is None:
            self._roles = user_roles(self.user)
        return self._roles

    def _read_roles_and_service_flag(self) -> None:
        """The roles and the service-account flag, both asked by every decision: one query (a UNION).

        The roles serve the rest of the decision's `roles_read_once` (the subject's service checks them too).
        """
        if not _is_active_user(self.user):
            self._roles, self._service = set(), bool(service_account_ids({self.user.pk}))
            return
        marks = service_account_marks(self.user.pk, mark=_SERVICE_ACCOUNT)
        names = set(roles_query(self.user).union(*marks, all=True))
        self._service = _SERVICE_ACCOUNT in names
        self._roles = names - {_SERVICE_ACCOUNT}
        remember_roles(self.user, self._roles)

    @property
    def delegations(self) -> tuple[list[Any], dict[int, set[str]]]:
        """The delegations the user holds today and their delegators' roles."""
        if self._delegations is None:
            held = active_delegations_to(self.user, today=self.today)
            self._delegations = (held, user_roles_by_id(d.delegator_id for d in held))
        return self._delegations


def _authorize(
    request: ApprovalRequest,
    step: ApprovalStep,
    subject: Any,
    user: Any,
    *,
    today: date,
    decider: _Decider | None = None,
    decisions: Iterable[ApprovalDecision] | None = None,
    pm_ids: frozenset[int] | None = None,
) -> Any | None:
    """May `user` decide the open step? Returns the principal they act for (None: themselves).

    Segregation of duties is checked against the user and, for a delegate, against the
    principal. A delegate must be eligible (never an auditor, a consultant or an API
    service user) and hold, now, a role the step accepts; the principal must be one of
    the step's approvers now. Roles are read afresh at every decision. A bulk decision
    passes what it loaded for all its requests at once (`decider`, `decisions`, `pm_ids`).
    """
    if not _is_active_user(user):
        raise PermissionDeniedError("Sign in with an active account to decide approvals.")
    decider = decider or _Decider(user, today=today)
    barred = _barred(request, subject, decisions)
    if user.pk in barred:
        raise SegregationOfDutiesError(f"{barred[user.pk](None)}; someone else must decide step {step.order}.")
    if decider.is_service_account:
        raise PermissionDeniedError("API service users never decide approvals; a person must.")
    roles = decider.roles
    if pm_ids is None:
        pm_ids = _routing_pm_ids(request, [step])
    routing = step_routing(step, pm_ids=pm_ids, escalated=request.escalated)
    if routing.allows(user.pk, roles):
        return None
    delegations, roles_by_user = decider.delegations
    eligible = [d.delegator for d in delegations if routing.allows(d.delegator_id, roles_by_user[d.delegator_id])]
    if not eligible:
        raise _not_yours(request, step, subject)
    name = display_name(eligible[0])
    refusal = delegate_refusal(user, roles, is_service_account=False)
    if refusal:
        raise PermissionDeniedError(
            f"{refusal} You hold a delegation from {name}, but cannot decide step {step.order} on their behalf."
        )
    fitting = [
        principal
        for principal in eligible
        if roles & accepted_delegate_roles(step, principal_roles=roles_by_user[principal.pk])
    ]
    if not fitting:
        raise PermissionDeniedError(
            f"You hold a delegation from {name}, but step {step.order} ({step.approver_label.lower()}) needs a role "
            "you do not hold; a delegate decides only with a role the step accepts."
        )
    for principal in fitting:
        if principal.pk not in barred:
            return principal
    principal = fitting[0]
    name = display_name(principal)
    raise SegregationOfDutiesError(
        f"{barred[principal.pk](name)}, so you cannot decide step {step.order} on {name}'s behalf."
    )


def _require_awaiting_subject(request: ApprovalRequest, subject: Any) -> None:
    """Every step, not only the last, is decided on a subject that still waits for this approval."""
    if not is_awaiting(subject):
        raise ConflictError(
            f"{subject_label(subject).capitalize()} is {subject.get_status_display().lower()}, no longer awaiting "
            f"approval; approval {request.pk} cannot be decided (cancel it).",
            code="subject_not_awaiting",
        )


def check_decider(
    *,
    request: ApprovalRequest,
    user: Any,
    subject: Any = None,
    steps: Sequence[ApprovalStep] | None = None,
    decisions: Sequence[ApprovalDecision] | None = None,
    roles: Iterable[str] | None = None,
) -> Any | None:
    """Raise if `user` may not decide the request's open step now; else the principal (None: themselves).

    A read-only check for screens (no locks); `approval_decide` checks again under lock. A screen that
    has read them this request passes the subject, the policy's steps (with their users), the request's
    decisions or the user's roles, so the check does not read them again.
    """
    if request.status != Status.PENDING:
        raise ConflictError(f"This approval is {request.get_status_display().lower()}.")
    if subject is None:
        model = subject_model(request.content_type_id)
        subject = model._default_manager.get(pk=request.object_id)
    _require_awaiting_subject(request, subject)
    today = timezone.localdate()
    decider = _Decider(user, today=today)
    if roles is not None:
        decider._roles = set(roles)
    step = _current_step(request, steps)
    return _authorize(request, step, subject, user, today=today, decider=decider, decisions=decisions)


def _new_decision(
    request: ApprovalRequest,
    step: ApprovalStep,
    user: Any,
    *,
    on_behalf_of: Any,
    decision: str,
    comment: str,
    now: datetime,
) -> ApprovalDecision:
    """The decision of the open step, as one decision and a bulk decision record it (not saved yet)."""
    return ApprovalDecision(
        request=request,
        step_order=step.order,
        approver=user,
        on_behalf_of=on_behalf_of,
        decision=decision,
        comment=comment,
        step_opened_at=request.step_opened_at,
        decided_at=now,
    )


class _StepTaken(Exception):
    """The decision's insert hit the one-decision-per-step constraint; raised out of the decision's transaction."""

    def __init__(self, step_order: int) -> None:
        super().__init__(step_order)
        self.step_order = step_order


def _record_decision(decision: ApprovalDecision, user: Any) -> None:
    """Insert the step's one decision; the `(request, step_order)` unique constraint refuses a second one.

    No savepoint of its own (two statements per decision): a refused insert aborts the decision's
    transaction, so it leaves as `_StepTaken` and `approval_decide` names who decided once rolled back.
    """
    try:
        save_audited(decision, user=user, reason=f"Step {decision.step_order}: {decision.get_decision_display()}")
    except IntegrityError as exc:
        raise _StepTaken(decision.step_order) from exc


def _apply_to_subject(effect: Callable[..., Any], subject: Any, *, on_behalf_of: Any, **kwargs: Any) -> Any:
    try:
        return effect(subject, **kwargs)
    except PermissionDeniedError as exc:
        if on_behalf_of is None:
            raise
        raise type(exc)(
            f"You decided on behalf of {display_name(on_behalf_of)}, but {subject_label(subject)} cannot take "
            f"your decision: {exc.message}",
            code=exc.code,
            field_errors=exc.field_errors,
        ) from exc


def approval_decide(*, request: ApprovalRequest, user: User, decision: str, comment: str = "") -> ApprovalRequest:
    """Decide the open step of `request` (the step the caller's instance shows).

    Approving the last step approves the subject through its billing service;
    rejecting (reason required) sends it back with the reason. A delegate's
    decision records `on_behalf_of`. Deciding a step someone else decided first
    raises ConflictError naming them.
    """
    if decision not in Decision.values:
        raise ApplicationError(
            f"Unknown decision {decision!r}: use approve or reject.",
            code="invalid",
            field_errors={"decision": ["Choose approve or reject."]},
        )
    comment = (comment or "").strip()
    if decision == Decision.REJECT:
        comment = require_reason(comment, "reject an approval")
    try:
        locked = _decide(request, user=user, decision=decision, comment=comment)
    except _StepTaken as taken:
        # Rolled back: the decision of this step that won the race names its author.
        if not ApprovalDecision.objects.filter(request_id=request.pk, step_order=taken.step_order).exists():
            raise taken.__cause__ from None
        raise _conflict(request, taken.step_order) from None
    _sync_caller(request, locked)
    return locked


def _decide(request: ApprovalRequest, *, user: Any, decision: str, comment: str) -> ApprovalRequest:
    """`approval_decide`'s transaction: lock subject then request, check under the locks, record, apply."""
    expected_step = request.current_step
    with transaction.atomic(), roles_read_once():
        subject = lock_subject(subject_model(request.content_type_id), request.object_id)
        locked = _lock_request(request)
        _check_still_open(locked, expected_step)
        _require_awaiting_subject(locked, subject)
        # What the checks and the next step need is read once, here, under both locks.
        steps = _policy_steps(locked)
        step = _current_step(locked, steps)
        next_step = _next_step(locked, steps) if decision == Decision.APPROVE else None
        earlier = list(locked.decisions.all())
        pm_ids = _routing_pm_ids(locked, [step, next_step])
        now = timezone.now()
        on_behalf_of = _authorize(
            locked, step, subject, user, today=timezone.localdate(now), decisions=earlier, pm_ids=pm_ids
        )
        made = _new_decision(locked, step, user, on_behalf_of=on_behalf_of, decision=decision, comment=comment, now=now)
        _record_decision(made, user)
        label = f"approval {locked.pk}"
        if decision == Decision.APPROVE:
            if next_step is not None:
                barred = set(_barred(locked, subject, [*earlier, made]))
                _open_step(locked, next_step, now=now, pm_ids=pm_ids, barred=barred)
                save_audited(locked, user=user, reason=f"Step {step.order} approved; step {next_step.order} open")
            else:
                apply_transition(locked, "approve", user=user, reason=comment or "Approved", label=label)
                lapse_pending_overrides(locked, user=user, why="Every step was decided")
                locked.decided_at = now
                save_audited(locked, user=user, reason=f"Step {step.order} approved; approved")
                _apply_to_subject(apply_approval, subject, on_behalf_of=on_behalf_of, user=user, comment=comment)
        else:
            apply_transition(locked, "reject", user=user, reason=comment, label=label)
            lapse_pending_overrides(locked, user=user, why=f"Rejected at step {step.order}")
            locked.decided_at = now
            locked.outcome_reason = comment
            save_audited(locked, user=user, reason=f"Step {step.order} rejected")
            _apply_to_subject(apply_rejection, subject, on_behalf_of=on_behalf_of, user=user, reason=comment)
    return locked


def _sync_caller(original: ApprovalRequest, saved: ApprovalRequest) -> None:
    """`refresh_caller` without reading the row back: `saved` is the locked copy just written with plain values.

    The caller's instance takes its field values (the FSM-protected status too) and drops cached
    relations and prefetches, as `refresh_from_db` would, saving a query after every decision.
    """
    if original is saved:
        return
    for field in ApprovalRequest._meta.concrete_fields:
        original.__dict__[field.attname] = saved.__dict__[field.attname]
        if field.is_relation:
            if field.is_cached(saved):
                field.set_cached_value(original, field.get_cached_value(saved))
            elif field.is_cached(original):
                field.delete_cached_value(original)
    for relation in (*ApprovalRequest._meta.related_objects, *ApprovalRequest._meta.private_fields):
        if relation.is_relation and relation.is_cached(original):
            relation.delete_cached_value(original)
    original._prefetched_objects_cache = {}


def _lock_subjects(subjects: Iterable[Any]) -> list[Any]:
    """Re-read many subjects under row locks: one query per model, in a fixed order (model, pk)."""
    by_model: dict[type, set[int]] = {}
    for subject in subjects:
        by_model.setdefault(type(subject), set()).add(subject.pk)
    locked: list[Any] = []
    for model in sorted(by_model, key=lambda m: m._meta.label):
        pks = sorted(by_model[model])
        rows = list(
            model._default_manager.select_for_update(of=("self",))
            .select_related(*handler_for(model).related)
            .filter(pk__in=pks)
            .order_by("pk")
        )
        missing = set(pks) - {row.pk for row in rows}
        if missing:
            raise ApplicationError(
                f"{model._meta.verbose_name_plural.capitalize()} not found: {sorted(missing)[:10]}.", code="not_found"
            )
        locked.extend(rows)
    return locked


def _caller_locked_subjects(subjects: Iterable[Any]) -> list[Any]:
    """Subjects the caller has already selected for update in this transaction, in the lock order (model, pk).

    Not read again: the caller's `SELECT … FOR UPDATE` (in the same fixed order) is the lock and the read
    every check runs on; `approval_decide_bulk` has checked that the caller's transaction (which holds
    the lock) is open.
    """
    unique = {(type(subject), subject.pk): subject for subject in subjects}
    for model, _pk in unique:
        handler_for(model)  # the not-approvable error, as when the engine locks them itself
    return [unique[key] for key in sorted(unique, key=lambda key: (key[0]._meta.label, key[1]))]


def _lock_pending_requests(subjects: Sequence[Any]) -> dict[tuple[int, int], ApprovalRequest]:
    """The pending requests of `subjects` under row locks (one query), keyed by (content type, object id).

    Without their policies: a decision needs only the policy's steps (read apart), the policy itself only
    to name it in a refusal.
    """
    keys = {(_content_type_id(type(s)), s.pk) for s in subjects}
    rows = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .filter(
            status=Status.PENDING,
            content_type_id__in={ct for ct, _ in keys},
            object_id__in={pk for _, pk in keys},
        )
        .order_by("pk")
    )
    return {(r.content_type_id, r.object_id): r for r in rows if (r.content_type_id, r.object_id) in keys}


def _loaded_project_managers(subjects: Iterable[Any]) -> dict[int, int | None]:
    """Project id → manager, for the subjects whose project row was read with their lock (not read again)."""
    known: dict[int, int | None] = {}
    for subject in subjects:
        loaded = handler_for(subject).loaded_project_manager(subject)
        if loaded is not None:
            known[loaded[0]] = loaded[1]
    return known


#: ApprovalRequest fields a decision changes (written with one UPDATE per distinct outcome).
_DECIDED_FIELDS = [
    "status",
    "current_step",
    "step_opened_at",
    "sla_due_at",
    "escalated",
    "escalated_at",
    "escalation_reason",
    "decided_at",
    "outcome_reason",
    "updated_at",
]


def approval_decide_bulk(
    *,
    subjects: Iterable[Any],
    user: User,
    decision: str,
    comment: str = "",
    refused: list[tuple[Any, ApplicationError]] | None = None,
    subjects_locked: bool = False,
) -> list[Any]:
    """Decide the open step of many subjects' pending requests at once, in a bounded number of queries.

    The same rules as `approval_decide`, item by item (segregation of duties,
    delegation, the step's approvers, the subject still awaiting approval), and
    the same records: one `ApprovalDecision` per request with its history row,
    the request's history row and transition log, the next step opened or the
    request settled. What `approval_decide` reads per request is read once for
    all of them (subjects and requests locked in one query per model, the
    policies' steps, earlier decisions, PMs, the user's roles and delegations),
    and the rows are written with bulk inserts/updates. A subject awaiting
    approval without a pending request is routed first (as `approval_decide`'s
    callers do). All or nothing: the first refusal raises and nothing is kept.

    The settled subjects' outcomes are applied through their handlers:
    approvals with `apply_approved_many` (one call per model), rejections one by one.
    Returns the subjects whose request was settled by this decision.

    `refused` (a list, the approvals queue's multi-select, ADR 0116): an item the user may not
    decide (segregation of duties, not one of the step's approvers, no longer awaiting approval,
    its step gone) is left undecided and appended as (subject, the error); the others proceed.

    `subjects_locked=True` (a billing service deciding the rows it has just locked, `work_approve_bulk`): the
    subjects were selected for update by the caller, in this transaction, in the order (model, pk), with
    the relations their handler's checks read; they are decided as they are instead of being locked and
    read a second time, inside the caller's transaction (no savepoint of their own: any refusal rolls the
    caller's transaction back whole). Outside a transaction this is refused.
    """
    from approvals.services.routing import requests_pm_ids
    from approvals.services.subjects import apply_approval_many

    if decision not in Decision.values:
        raise ApplicationError(
            f"Unknown decision {decision!r}: use approve or reject.",
            code="invalid",
            field_errors={"decision": ["Choose approve or reject."]},
        )
    comment = (comment or "").strip()
    if decision == Decision.REJECT:
        comment = require_reason(comment, "reject an approval")
    subjects = list(subjects)
    if not subjects:
        return []
    if subjects_locked and not transaction.get_connection().in_atomic_block:
        raise TransactionManagementError("subjects_locked: lock the subjects in the caller's transaction first.")
    with transaction.atomic(savepoint=not subjects_locked), buffered_state_logs():
        locked_subjects = _caller_locked_subjects(subjects) if subjects_locked else _lock_subjects(subjects)
        awaiting = []
        for subject in locked_subjects:
            if not is_awaiting(subject):
                error = ConflictError(
                    f"{subject_label(subject).capitalize()} is {subject.get_status_display().lower()}, no longer "
                    "awaiting approval; there is nothing to decide.",
                    code="subject_not_awaiting",
                )
                if refused is None:
                    raise error
                refused.append((subject, error))
            else:
                awaiting.append(subject)
        locked_subjects = awaiting
        if not locked_subjects:
            return []
        requests = _lock_pending_requests(locked_subjects)
        unrouted = [s for s in locked_subjects if (_content_type_id(type(s)), s.pk) not in requests]
        if unrouted:
            approval_requests_open_bulk(subjects=unrouted, user=user)
            requests = _lock_pending_requests(locked_subjects)
        now = timezone.now()
        today = timezone.localdate(now)
        decider = _Decider(user, today=today)
        steps_by_policy: dict[int, list[ApprovalStep]] = {}
        for step in (
            ApprovalStep.objects.filter(policy_id__in={r.policy_id for r in requests.values()})
            .select_related("user")
            .order_by("policy_id", "order")
        ):
            steps_by_policy.setdefault(step.policy_id, []).append(step)
        earlier: dict[int, list[ApprovalDecision]] = {}
        for earlier_decision in ApprovalDecision.objects.filter(request_id__in=[r.pk for r in requests.values()]):
            earlier.setdefault(earlier_decision.request_id, []).append(earlier_decision)
        pm_ids = requests_pm_ids(requests.values(), known=_loaded_project_managers(locked_subjects))
        policy_names: dict[int, str] = {}  # of refusals naming a changed policy: one read per policy, not per item
        decisions: list[ApprovalDecision] = []
        changed: list[ApprovalRequest] = []
        settled: list[tuple[Any, ApprovalRequest, Any]] = []
        for subject in locked_subjects:
            locked = requests[(_content_type_id(type(subject)), subject.pk)]
            steps = steps_by_policy.get(locked.policy_id, [])
            step = next((s for s in steps if s.order == locked.current_step), None)
            before = earlier.get(locked.pk, [])
            try:
                if step is None:
                    if locked.policy_id not in policy_names:
                        policy_names[locked.policy_id] = str(locked.policy)
                    raise ApplicationError(
                        f"Step {locked.current_step} no longer exists in policy '{policy_names[locked.policy_id]}'; "
                        "cancel the request and open it again.",
                        code="policy_changed",
                    )
                on_behalf_of = _authorize(
                    locked,
                    step,
                    subject,
                    user,
                    today=today,
                    decider=decider,
                    decisions=before,
                    pm_ids=pm_ids[locked.pk],
                )
            except ApplicationError as error:
                if refused is None:
                    raise
                refused.append((subject, error))
                continue
            made = _new_decision(
                locked, step, user, on_behalf_of=on_behalf_of, decision=decision, comment=comment, now=now
            )
            made._history_user = user
            made._change_reason = f"Step {step.order}: {made.get_decision_display()}"
            decisions.append(made)
            label = f"approval {locked.pk}"
            next_step = next((s for s in steps if s.order > step.order), None) if decision == Decision.APPROVE else None
            if next_step is not None:
                barred = set(_barred(locked, subject, [*before, made]))
                _open_step(locked, next_step, now=now, pm_ids=pm_ids[locked.pk], barred=barred)
                locked._change_reason = f"Step {step.order} approved; step {next_step.order} open"
            elif decision == Decision.APPROVE:
                apply_transition(locked, "approve", user=user, reason=comment or "Approved", label=label)
                locked.decided_at = now
                locked._change_reason = f"Step {step.order} approved; approved"
                settled.append((subject, locked, on_behalf_of))
            else:
                apply_transition(locked, "reject", user=user, reason=comment, label=label)
                locked.decided_at = now
                locked.outcome_reason = comment
                locked._change_reason = f"Step {step.order} rejected"
                settled.append((subject, locked, on_behalf_of))
            locked._history_user = user
            locked.updated_at = now
            changed.append(locked)
        try:
            with transaction.atomic():
                bulk_create_with_history(decisions, ApprovalDecision, batch_size=500, default_user=user)
        except IntegrityError as exc:
            raise ConflictError("Some of these approvals were decided by someone else a moment ago; reload.") from exc
        # One UPDATE per distinct outcome (usually one: every request approved at its last step); a CASE per
        # field and row (bulk_update) costs PostgreSQL quadratic time on a large selection.
        outcomes: dict[tuple, list[int]] = {}
        for locked in changed:
            outcomes.setdefault(tuple(getattr(locked, f) for f in _DECIDED_FIELDS), []).append(locked.pk)
        for values, pks in outcomes.items():
            ApprovalRequest.objects.filter(pk__in=pks).update(**dict(zip(_DECIDED_FIELDS, values, strict=True)))
        ApprovalRequest.history.bulk_history_create(changed, batch_size=500, update=True, default_user=user)
        if settled:
            why = "Every step was decided" if decision == Decision.APPROVE else "Rejected"
            for override in ApprovalOverride.objects.select_for_update().filter(
                request_id__in=[locked.pk for _, locked, _ in settled], status=ApprovalOverride.Status.PENDING
            ):
                apply_transition(override, "lapse", user=user, reason=why, label="the override")
                override.comment = why
                save_audited(override, user=user, reason="Override lapsed")
        if decision == Decision.APPROVE:
            try:
                apply_approval_many(
                    [subject for subject, _, _ in settled], user=user, comment=comment, roles=frozenset(decider.roles)
                )
            except PermissionDeniedError as exc:
                principal = next((p for _, _, p in settled if p is not None), None)
                if principal is None:
                    raise
                raise type(exc)(
                    f"You decided on behalf of {display_name(principal)}, but not every item can take your "
                    f"decision: {exc.message}",
                    code=exc.code,
                    field_errors=exc.field_errors,
                ) from exc
        else:
            for subject, _, principal in settled:
                _apply_to_subject(apply_rejection, subject, on_behalf_of=principal, user=user, reason=comment)
    return [subject for subject, _, _ in settled]


def lapse_pending_overrides(request: ApprovalRequest, *, user: Any, why: str) -> int:
    """The request was settled another way (decided, rejected, cancelled): its pending override lapses."""
    count = 0
    for current in ApprovalOverride.objects.select_for_update().filter(
        request_id=request.pk, status=ApprovalOverride.Status.PENDING
    ):
        apply_transition(current, "lapse", user=user, reason=why, label="the override")
        current.comment = why
        save_audited(current, user=user, reason="Override lapsed")
        count += 1
    return count


def approval_approve(*, request: ApprovalRequest, user: User, comment: str = "") -> ApprovalRequest:
    """Approve the open step (admin actions, screens)."""
    return approval_decide(request=request, user=user, decision=Decision.APPROVE, comment=comment)


def approval_reject(*, request: ApprovalRequest, user: User, reason: str) -> ApprovalRequest:
    """Reject the open step with a reason; the subject goes back with it."""
    return approval_decide(request=request, user=user, decision=Decision.REJECT, comment=reason)


# --- cancelling and escalating ---------------------------------------------------------------------


def _check_may_cancel(request: ApprovalRequest, user: Any) -> None:
    if not _is_active_user(user):
        raise PermissionDeniedError("Sign in with an active account to cancel approvals.")
    if user.pk in (request.requested_by_id, request.prepared_by_id):
        return
    if has_any_role(user, {*FINANCE_ROLES, BILLING_ADMIN}) or user.is_superuser:
        return
    raise PermissionDeniedError("Only the requester, the subject's preparer, finance or a billing admin can cancel it.")


def _check_subject_left_the_route(request: ApprovalRequest) -> None:
    """A person cancels a request only with its subject, never the route alone.

    A subject still awaiting approval without a pending request would be decided
    outside its policy (its service takes the decision directly): one person could
    skip every step. The subject's own service (cancel the draft, withdraw the credit
    note, decide it) moves it first and then cancels the request.
    """
    model = subject_model(request.content_type_id)
    subject = model._default_manager.get(pk=request.object_id)
    if subject.status == awaiting_status(model):
        raise InvalidTransitionError(
            f"{subject_label(subject).capitalize()} still awaits approval: its route cannot be cancelled on its own "
            "(that would let it be decided outside its policy). Cancel, withdraw or decide the subject instead.",
            code="subject_awaiting_approval",
        )


def approval_request_cancel(*, request: ApprovalRequest, user: User | None = None, reason: str) -> ApprovalRequest:
    """Withdraw a pending request (the subject was cancelled, revalidated or withdrawn); `user=None`: the system.

    A person (admin action, a service acting for a user) may cancel only once the subject has left
    its awaiting state (`_check_subject_left_the_route`).
    """
    reason = require_reason(reason, "cancel an approval request")
    with transaction.atomic():
        locked = _lock_request(request)
        if user is not None:
            _check_may_cancel(locked, user)
            _check_subject_left_the_route(locked)
        apply_transition(locked, "cancel", user=user, reason=reason, label=f"approval {locked.pk}")
        lapse_pending_overrides(locked, user=user, why=f"Approval cancelled: {reason}")
        locked.decided_at = timezone.now()
        locked.outcome_reason = reason
        save_audited(locked, user=user, reason=f"Cancelled: {reason}")
    refresh_caller(request, locked)
    return locked


def approval_requests_cancel_for(*, subject: Any, user: User | None = None, reason: str) -> int:
    """Cancel the subject's pending request, if it has one (for billing services that take it back)."""
    request = _pending_request(_content_type_id(type(subject)), subject.pk)
    if request is None:
        return 0
    approval_request_cancel(request=request, user=user, reason=reason)
    return 1


def approval_request_escalate(*, request: ApprovalRequest, now: datetime | None = None) -> bool:
    """Mark a request whose open step is past its SLA as escalated; False when there is nothing to do."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock_request(request)
        if locked.status != Status.PENDING or locked.escalated or locked.sla_due_at >= now:
            return False
        locked.escalated, locked.escalated_at, locked.escalation_reason = True, now, Reason.SLA
        save_audited(locked, user=None, reason=f"Escalated: step {locked.current_step} past its SLA")
    refresh_caller(request, locked)
    return True


def _requests_visible_to(user: User, ids: list[int]) -> set[int]:
    """Of `ids`, the requests whose subject the user may be told about: in their queue now, or decided by them."""
    from approvals.selectors import my_approvals

    queued = my_approvals(user).filter(pk__in=ids).prefetch_related(None).values_list("pk", flat=True)
    decided = ApprovalDecision.objects.filter(Q(approver=user) | Q(on_behalf_of=user), request_id__in=ids)
    return {*queued, *decided.values_list("request_id", flat=True)}


def approval_requests_decide_selected(
    *, request_ids: Iterable[int], user: User, decision: str, comment: str = ""
) -> tuple[list[ApprovalRequest], list[tuple[str, str]]]:
    """The approvals queue's multi-select: decide the open step of the selected requests, whatever their type.

    Through `approval_decide_bulk` (bounded queries, the same records and checks as one by
    one), with per-item refusals: an item the user may not decide is reported as
    (label, reason) and left as it is; the others are decided in the same transaction.
    Requests no longer pending are reported the same way. Returns (the requests decided, the refusals).
    """
    ids = sorted({int(pk) for pk in request_ids})
    if not ids:
        raise ApplicationError(
            "Select at least one approval.", code="invalid", field_errors={"request": ["Select one."]}
        )
    requests = list(ApprovalRequest.objects.filter(pk__in=ids).prefetch_related("subject").order_by("pk"))
    visible = _requests_visible_to(user, ids)
    refusals: list[tuple[str, str]] = []
    subjects = []
    request_of: dict[tuple[type, int], ApprovalRequest] = {}
    for approval in requests:
        subject = approval.subject
        if approval.status != Status.PENDING or subject is None:
            shown = subject is not None and approval.pk in visible
            label = subject_label(subject) if shown else f"approval {approval.pk}"
            refusals.append((label, f"{label.capitalize()} is no longer pending; there is nothing to decide."))
            continue
        subjects.append(subject)
        request_of[(type(subject), subject.pk)] = approval
    refused: list[tuple[Any, ApplicationError]] = []
    with transaction.atomic():
        approval_decide_bulk(subjects=subjects, user=user, decision=decision, comment=comment, refused=refused)
    for subject, error in refused:
        approval = request_of[(type(subject), subject.pk)]
        if approval.pk in visible:
            refusals.append((subject_label(subject), error.message))
        else:  # someone else's: neither what it is nor why it is not the user's
            refusals.append((f"approval {approval.pk}", "It is not in your approvals queue."))
    not_decided = {(type(subject), subject.pk) for subject, _ in refused}
    decided = [
        approval
        for approval in requests
        if approval.status == Status.PENDING
        and approval.subject is not None
        and (type(approval.subject), approval.subject.pk) not in not_decided
    ]
    return decided, refusals
