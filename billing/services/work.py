"""Time entries and expenses: create, submit, approve, reject, redraft, reopen.

Both share one FSM (`billing.models.work.SubmittedWork`). Every state change
locks the row, asks the FSM, saves through `save_audited` (history row with
user and reason) and leaves a django-fsm-log StateLog row. Who may act is
decided by `billing.rules`; segregation of duties is checked first so the
refusal names the real reason.

`lock_for_update`, `apply_transition` and `require_reason` (in `kernel.workflow`) are
shared with every other workflow service.

Approvals (docs/rules/approvals.md) — every approvable subject goes through the one engine in
`approvals.services`:

- Handing a subject over for approval (`work_submit`, `work_reopen` here,
  `milestone_complete`, `change_order_submit`) opens its ApprovalRequest in the
  same transaction (`open_approval`). No matching policy refuses the hand-over:
  nothing waits for approval unrouted.
- Deciding (`work_approve`, `work_approve_bulk`, `work_reject`,
  `milestone_approve`, `change_order_approve`/`_reject`) first asks
  `route_decision` what the subject's pending request says:

  * ENGINE — the subject has a pending request and the user may decide its open
    step: the decision is recorded by `approval_decide` (step, delegation,
    segregation of duties, audit). On the last step (or a rejection) the engine
    settles the request and then calls this same service back to apply the
    outcome; by then no request is pending, so that inner call is DIRECT. On an
    earlier step of a multi-step policy the subject keeps waiting for the next
    step (the service returns it unchanged).
  * DIRECT — the engine is calling back (above) to apply a settled request:
    the service's own rules (`billing.rules`) apply the outcome. A subject
    awaiting approval without a pending request (its request was cancelled,
    data from before the wiring) is routed first (`approval_request_open`) and
    decided through the engine: cancelling a request never opens a way around it.
  Anyone else — a finance controller included — gets the engine's refusal. No
  single person skips a route: a controller who must go faster requests an
  override of the route, which a second controller confirms
  (`approvals.services.overrides`, four eyes); the engine then records a
  decision on every skipped step and calls the subject's service back (DIRECT).

  So a decided subject never keeps a pending request, and a pending request is
  only settled by the engine (step decisions or a confirmed override).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date as date_type
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.files import File
from django.db import models, transaction
from django.db.models import Sum
from django.utils import timezone

from billing import rules as billing_rules
from billing.models import Expense, Person, Project, TimeEntry
from billing.models.work import MAX_HOURS_PER_DAY, SubmittedWork, WorkStatus, booking_refusal
from kernel.audit import save_audited
from kernel.errors import (
    ApplicationError,
    ConflictError,
    InvalidTransitionError,
    PermissionDeniedError,
    SegregationOfDutiesError,
)
from kernel.fsm_log import buffered_state_logs
from kernel.roles import FINANCE_CONTROLLER
from kernel.workflow import apply_transition, full_clean_or_raise, lock_for_update, refresh_caller, require_reason

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any

M = TypeVar("M", bound=models.Model)
WorkItem = TimeEntry | Expense


def _kind(item: SubmittedWork) -> str:
    return "time entry" if isinstance(item, TimeEntry) else "expense"


def _label(item: SubmittedWork) -> str:
    return f"{_kind(item)} {item.pk}"


# --- approvals wiring (see the module docstring) -----------------------------------------------


class Route:
    """How a decision on a subject is taken: see `route_decision`."""

    ENGINE = "engine"
    DIRECT = "direct"


def open_approval(subject: models.Model, *, user: User | None) -> None:
    """Route a subject that now awaits approval to its policy, in the caller's transaction."""
    from approvals.services import approval_request_open

    approval_request_open(subject=subject, user=user)


def route_decision(subject: models.Model, *, user: User, decision: str, comment: str = "") -> tuple[str, Any]:
    """Take an approve/reject decision on a locked subject through its pending request, if it has one.

    Returns `(Route.ENGINE, request)` when the engine took the decision (and, on
    the last step, applied it by calling the subject's service back), and
    `(Route.DIRECT, None)` when there is no pending request. Whoever may not
    decide the open step is refused by the engine: nobody decides around it.
    """
    from django.contrib.contenttypes.models import ContentType

    from approvals.models import ApprovalRequest
    from approvals.services import approval_decide, approval_request_open
    from approvals.services.subjects import engine_is_applying, is_awaiting

    if engine_is_applying(subject):
        return Route.DIRECT, None
    request = (
        ApprovalRequest.objects.filter(
            content_type=ContentType.objects.get_for_model(type(subject)),
            object_id=subject.pk,
            status=ApprovalRequest.Status.PENDING,
        )
        .select_related("policy")
        .first()
    )
    if request is None:
        if not is_awaiting(subject):
            return Route.DIRECT, None  # the service refuses the transition with its own message
        request = approval_request_open(subject=subject, user=user)
    approval_decide(request=request, user=user, decision=decision, comment=comment)
    return Route.ENGINE, request


# --- creation -----------------------------------------------------------------------------------


def _check_bookable(*, person: Person, project: Project, user: User, item: SubmittedWork) -> None:
    """New work needs an active person on an active project of an active contract."""
    if not billing_rules.can_create_work.test(user, item):
        raise PermissionDeniedError(
            f"You may not record work for {person} on project {project.code}: only the person, "
            "the project's manager or finance can."
        )
    refusal = booking_refusal(person, project)
    if refusal is not None:
        code, message, party, short = refusal
        # The portal's forms choose the project; the person is the login's own record.
        raise ApplicationError(message, code=code, field_errors={"project": [short]} if party == "project" else None)


def _as_decimal(value: Any, field: str) -> Decimal:
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ApplicationError(
            f"{field} must be a number.", code="invalid", field_errors={field: ["Enter a number."]}
        ) from exc


def time_entry_create(
    *,
    person: Person,
    project: Project,
    date: date_type,
    hours: Decimal | str | int,
    description: str = "",
    billable: bool = True,
    user: User,
) -> TimeEntry:
    """Record a draft time entry; nobody books more than 24 h on one day.

    The day total is checked under a lock on the Person row, so two concurrent
    bookings for the same person cannot both pass the check.
    """
    hours = _as_decimal(hours, "hours")
    _check_hours(hours)
    with transaction.atomic():
        person = Person.objects.select_for_update().get(pk=person.pk)
        project = Project.objects.select_related("contract").get(pk=project.pk)
        entry = TimeEntry(
            person=person, project=project, date=date, hours=hours, description=description, billable=billable
        )
        _check_bookable(person=person, project=project, user=user, item=entry)
        booked = TimeEntry.objects.filter(person=person, date=date).aggregate(total=Sum("hours"))["total"]
        booked = booked or Decimal("0")
        if booked + hours > MAX_HOURS_PER_DAY:
            raise ApplicationError(
                f"{person} already has {booked} h on {date}; adding {hours} h would exceed "
                f"{MAX_HOURS_PER_DAY} h for the day.",
                code="daily_hours_exceeded",
                field_errors={"hours": [f"At most {MAX_HOURS_PER_DAY - booked} h left on {date}."]},
            )
        full_clean_or_raise(entry, exclude=["invoice_line"])
        save_audited(entry, user=user, reason="Time entry recorded")
    return entry


def expense_create(
    *,
    person: Person,
    project: Project,
    date: date_type,
    amount: Decimal | str | int,
    currency: str,
    category: str,
    description: str = "",
    billable: bool = True,
    receipt: File | None = None,
    user: User,
) -> Expense:
    """Record a draft expense in its original currency (converted at billing time)."""
    amount = _as_decimal(amount, "amount")
    if amount <= 0:
        raise ApplicationError(
            f"An expense amount must be positive (got {amount}).",
            code="invalid_amount",
            field_errors={"amount": ["Must be more than 0."]},
        )
    with transaction.atomic():
        person = Person.objects.get(pk=person.pk)
        project = Project.objects.select_related("contract").get(pk=project.pk)
        expense = Expense(
            person=person,
            project=project,
            date=date,
            amount=amount,
            currency=(currency or "").upper(),
            category=category,
            description=description,
            billable=billable,
        )
        if receipt is not None:
            expense.receipt = receipt
        _check_bookable(person=person, project=project, user=user, item=expense)
        full_clean_or_raise(expense, exclude=["invoice_line", "receipt"])
        save_audited(expense, user=user, reason="Expense recorded")
    return expense


def _check_hours(hours: Decimal) -> None:
    if not (Decimal("0") < hours <= MAX_HOURS_PER_DAY):
        raise ApplicationError(
            f"Hours must be more than 0 and at most {MAX_HOURS_PER_DAY} (got {hours}).",
            code="invalid_hours",
            field_errors={"hours": [f"Must be more than 0 and at most {MAX_HOURS_PER_DAY}."]},
        )


def _lock_draft(item: WorkItem, user: User, action: str) -> SubmittedWork:
    try:
        locked = lock_for_update(item, "person", "project", "project__contract")
    except type(item).DoesNotExist:  # discarded meanwhile (a second tab, a double submit): say so, no error page
        raise ConflictError(
            f"Cannot {action} {_label(item)}: it was discarded meanwhile. Reload the week.", code="gone"
        ) from None
    if not billing_rules.can_create_work.test(user, locked):
        raise PermissionDeniedError(
            f"You may not {action} {_label(locked)}: only its person, the project's manager or finance can."
        )
    if locked.status != WorkStatus.DRAFT:
        raise InvalidTransitionError(
            f"Cannot {action} {_label(locked)}: it is {locked.get_status_display().lower()}; only drafts change.",
            code="not_draft",
        )
    return locked


def time_entry_update_draft(
    *, entry: TimeEntry, hours: Decimal | str | int, description: str | None = None, user: User
) -> TimeEntry:
    """Change the hours (and description) of a draft time entry, with the checks of `time_entry_create`.

    The day total is checked under the Person row lock, as on creation.
    """
    hours = _as_decimal(hours, "hours")
    _check_hours(hours)
    with transaction.atomic():
        Person.objects.select_for_update().get(pk=entry.person_id)
        locked = _lock_draft(entry, user, "change")
        _check_bookable(person=locked.person, project=locked.project, user=user, item=locked)
        booked = (
            TimeEntry.objects.filter(person_id=locked.person_id, date=locked.date)
            .exclude(pk=locked.pk)
            .aggregate(total=Sum("hours"))["total"]
        ) or Decimal("0")
        if booked + hours > MAX_HOURS_PER_DAY:
            raise ApplicationError(
                f"{locked.person} already has {booked} h on {locked.date} in other entries; {hours} h here would "
                f"exceed {MAX_HOURS_PER_DAY} h for the day.",
                code="daily_hours_exceeded",
                field_errors={"hours": [f"At most {MAX_HOURS_PER_DAY - booked} h left on {locked.date}."]},
            )
        changed = locked.hours != hours or (description is not None and description != locked.description)
        if changed:
            locked.hours = hours
            if description is not None:
                locked.description = description
            full_clean_or_raise(locked, exclude=["invoice_line"])
            save_audited(locked, user=user, reason="Draft changed")
    refresh_caller(entry, locked)
    return locked


def time_entry_discard_draft(*, entry: TimeEntry, user: User) -> None:
    """Delete a draft time entry (a wrong row in the timesheet); its history keeps the deletion and who did it.

    Only drafts: submitted or approved time is corrected through rejection or reopening.
    """
    with transaction.atomic():
        locked = _lock_draft(entry, user, "discard")
        locked._history_user = user if getattr(user, "pk", None) else None
        locked._change_reason = "Draft discarded"
        locked.delete()


def expense_update_draft(
    *,
    expense: Expense,
    user: User,
    date: date_type,
    amount: Decimal | str | int,
    currency: str,
    category: str,
    description: str = "",
    billable: bool = True,
    receipt: File | None = None,
) -> Expense:
    """Correct a draft expense (e.g. after a rejection); a new receipt replaces the old one."""
    amount = _as_decimal(amount, "amount")
    if amount <= 0:
        raise ApplicationError(
            f"An expense amount must be positive (got {amount}).",
            code="invalid_amount",
            field_errors={"amount": ["Must be more than 0."]},
        )
    with transaction.atomic():
        locked = _lock_draft(expense, user, "change")
        locked.date = date
        locked.amount = amount
        locked.currency = (currency or "").upper()
        locked.category = category
        locked.description = description
        locked.billable = billable
        if receipt is not None:
            locked.receipt = receipt
        _check_bookable(person=locked.person, project=locked.project, user=user, item=locked)
        full_clean_or_raise(locked, exclude=["invoice_line", "receipt"])
        save_audited(locked, user=user, reason="Draft changed")
    refresh_caller(expense, locked)
    return locked


# --- transitions -----------------------------------------------------------------------------


def _lock_item(item: WorkItem) -> WorkItem:
    return lock_for_update(item, "person", "project")


def _check_decider(item: SubmittedWork, user: User, action: str) -> None:
    """Approve/reject/reopen: the project's PM or a finance controller, never on one's own work."""
    if billing_rules.owns_work.test(user, item):
        raise SegregationOfDutiesError(f"You cannot {action} your own {_kind(item)} ({_label(item)}).")
    if not (billing_rules.is_project_manager_of.test(user, item) or billing_rules.is_finance_controller.test(user)):
        raise PermissionDeniedError(
            f"Only the manager of project {item.project.code} or a finance controller can {action} {_label(item)}."
        )


def _submit_locked(locked: SubmittedWork, user: User) -> None:
    if not billing_rules.can_submit_work.test(user, locked):
        raise PermissionDeniedError(f"You may not submit {_label(locked)}: it is not yours.")
    if locked.project.status == Project.Status.CLOSED:
        raise ApplicationError(
            f"Project {locked.project.code} is closed; no more work can be submitted.", code="project_closed"
        )
    apply_transition(locked, "submit", user=user, label=_label(locked))
    locked.submitted_at = timezone.now()
    locked.rejection_reason = ""
    save_audited(locked, user=user, reason="Submitted for approval")


def work_submit(*, item: WorkItem, user: User) -> WorkItem:
    """Hand a draft to the project's manager for approval (opens its approval request)."""
    with transaction.atomic():
        locked = _lock_item(item)
        _submit_locked(locked, user)
        open_approval(locked, user=user)
    refresh_caller(item, locked)
    return locked


def _lock_many(items: Iterable[WorkItem]) -> list[SubmittedWork]:
    """Lock the rows of many items in a fixed order (model, pk), so two bulk calls cannot deadlock."""
    by_model: dict[type[SubmittedWork], set[int]] = {}
    for item in items:
        by_model.setdefault(type(item), set()).add(item.pk)
    rows: list[SubmittedWork] = []
    for model in sorted(by_model, key=lambda m: m._meta.label):
        pks = sorted(by_model[model])
        locked_rows = list(
            model._default_manager.select_for_update(of=("self",))
            .select_related("person", "project")
            .filter(pk__in=pks)
            .order_by("pk")
        )
        missing = set(pks) - {row.pk for row in locked_rows}
        if missing:
            raise ApplicationError(
                f"{model._meta.verbose_name_plural.capitalize()} not found: {sorted(missing)}.", code="not_found"
            )
        rows.extend(locked_rows)
    return rows


def work_submit_bulk(*, items: Iterable[WorkItem], user: User) -> int:
    """Submit many drafts (a timesheet week) in one transaction: all of them, or none if one is refused.

    Their approval requests are opened together (`approval_requests_open_bulk`).
    """
    from approvals.services import approval_requests_open_bulk

    with transaction.atomic():
        rows = _lock_many(items)
        for row in rows:
            _submit_locked(row, user)
        approval_requests_open_bulk(subjects=rows, user=user)
    return len(rows)


def _approve_locked(locked: SubmittedWork, user: User, now: Any) -> None:
    _check_decider(locked, user, "approve")
    apply_transition(locked, "approve", user=user, label=_label(locked))
    locked.approved_by = user
    locked.approved_at = now
    locked.rejection_reason = ""
    save_audited(locked, user=user, reason="Approved")


def _decide_approve(locked: SubmittedWork, user: User, now: Any) -> bool:
    """Approve one locked item through its route; True when the item is now approved."""
    route, _request = route_decision(locked, user=user, decision="approve")
    if route == Route.ENGINE:
        locked.refresh_from_db()
        return locked.status == WorkStatus.APPROVED
    _approve_locked(locked, user, now)
    return True


def work_approve(*, item: WorkItem, user: User) -> WorkItem:
    """Approve submitted work so the billing engine may bill it.

    With a pending approval request the decision is the engine's (see the module
    docstring); under a multi-step policy the item stays submitted until the last step.
    """
    with transaction.atomic():
        locked = _lock_item(item)
        _decide_approve(locked, user, timezone.now())
    refresh_caller(item, locked)
    return locked


def work_approve_bulk(*, items: Iterable[WorkItem], user: User) -> int:
    """Approve many items (a PM's week) in one transaction: all of them, or none if one is refused.

    Each item goes through its route like `work_approve`, decided together by
    `approval_decide_bulk` (one decision per item, the same checks and records),
    so a week of any length costs a bounded number of queries. An item not
    awaiting approval gets `work_approve`'s own refusal. Rows are locked in a
    fixed order (model, pk) so two bulk approvals cannot deadlock. Returns how
    many items are now approved (fewer when a multi-step policy still waits for a
    further step).
    """
    from approvals.services import approval_decide_bulk

    now = timezone.now()
    count = 0
    with transaction.atomic(), buffered_state_logs():
        rows = _lock_many(items)
        for row in rows:
            if row.status != WorkStatus.SUBMITTED:
                count += _decide_approve(row, user, now)  # refused as `work_approve` refuses it
        awaiting = [row for row in rows if row.status == WorkStatus.SUBMITTED]
        if awaiting:
            # The rows are locked above, in this transaction and in the engine's order: decided as they are.
            count += len(approval_decide_bulk(subjects=awaiting, user=user, decision="approve", subjects_locked=True))
    return count


def _managed_projects(items: Sequence[WorkItem], user: User) -> set[int]:
    """The items' projects `user` manages: from the project rows read with the items' lock, else one query."""
    if not billing_rules.is_active_user(user):
        return set()
    if all(type(item).project.is_cached(item) for item in items):
        return {item.project_id for item in items if item.project.project_manager_id == user.pk}
    return set(
        Project.objects.filter(pk__in={item.project_id for item in items}, project_manager_id=user.pk).values_list(
            "pk", flat=True
        )
    )


def work_apply_approved_many(*, items: Sequence[WorkItem], user: User, roles: Iterable[str] | None = None) -> None:
    """Apply settled approvals to many locked items of one model (the engine's bulk callback).

    The checks and records of `work_approve`'s direct path, set-based: who may
    decide (the projects the user manages, as read with the items' lock; their
    roles, as the engine read them in this transaction (`roles`), else one query),
    the FSM transition with its log row (inserted together), one history row per
    item ("Approved", the user), written with one UPDATE and one history INSERT.
    Inside the engine's transaction it takes no savepoint: a refusal rolls the
    whole decision back.
    """
    if not items:
        return
    now = timezone.now()
    with transaction.atomic(savepoint=False), buffered_state_logs():
        managed = _managed_projects(items, user)
        if roles is None:
            controller = billing_rules.is_finance_controller.test(user)
        else:
            controller = billing_rules.is_active_user(user) and FINANCE_CONTROLLER in set(roles)
        for item in items:
            if billing_rules.owns_work.test(user, item):
                raise SegregationOfDutiesError(f"You cannot approve your own {_kind(item)} ({_label(item)}).")
            if item.project_id not in managed and not controller:
                raise PermissionDeniedError(
                    f"Only the manager of project {item.project.code} or a finance controller can approve "
                    f"{_label(item)}."
                )
            apply_transition(item, "approve", user=user, label=_label(item))
            item.approved_by = user
            item.approved_at = now
            item.rejection_reason = ""
            item.updated_at = now
            item._history_user = user if getattr(user, "pk", None) else None
            item._change_reason = "Approved"
        model = type(items[0])
        # The same values for every item: one UPDATE (not a CASE per row and field), then the history rows.
        model._default_manager.filter(pk__in=[item.pk for item in items]).update(
            status=WorkStatus.APPROVED, approved_by=user, approved_at=now, rejection_reason="", updated_at=now
        )
        model.history.bulk_history_create(list(items), batch_size=500, update=True, default_user=user)


def work_reject(*, item: WorkItem, user: User, reason: str) -> WorkItem:
    """Send submitted work back to its owner with the reason it cannot be approved (through its route)."""
    reason = require_reason(reason, "reject work")
    with transaction.atomic():
        locked = _lock_item(item)
        route, _request = route_decision(locked, user=user, decision="reject", comment=reason)
        if route == Route.ENGINE:
            locked.refresh_from_db()
        else:
            _check_decider(locked, user, "reject")
            apply_transition(locked, "reject", user=user, reason=reason, label=_label(locked))
            locked.rejection_reason = reason
            locked.approved_by = None
            locked.approved_at = None
            save_audited(locked, user=user, reason=reason)
    refresh_caller(item, locked)
    return locked


def work_redraft(*, item: WorkItem, user: User) -> WorkItem:
    """The owner takes rejected work back to draft to correct it (the rejection reason stays visible)."""
    with transaction.atomic():
        locked = _lock_item(item)
        if not billing_rules.can_redraft_work.test(user, locked):
            raise PermissionDeniedError(f"Only the person who recorded {_label(locked)} can take it back to draft.")
        apply_transition(locked, "redraft", user=user, label=_label(locked))
        save_audited(locked, user=user, reason="Back to draft for correction")
    refresh_caller(item, locked)
    return locked


def work_reopen(*, item: WorkItem, user: User, reason: str) -> WorkItem:
    """Take approved, not yet invoiced work back to submitted (e.g. approved by mistake).

    It awaits approval again, so a new approval request is opened. Invoiced work
    is never reopened: it is corrected with a credit note.
    """
    reason = require_reason(reason, "reopen approved work")
    with transaction.atomic():
        locked = _lock_item(item)
        _check_decider(locked, user, "reopen")
        if locked.status == WorkStatus.INVOICED or locked.invoice_line_id:
            raise InvalidTransitionError(
                f"{_label(locked).capitalize()} is already invoiced; correct it with a credit note.",
                code="already_invoiced",
            )
        apply_transition(locked, "reopen", user=user, reason=reason, label=_label(locked))
        locked.approved_by = None
        locked.approved_at = None
        save_audited(locked, user=user, reason=reason)
        open_approval(locked, user=user)
    refresh_caller(item, locked)
    return locked
