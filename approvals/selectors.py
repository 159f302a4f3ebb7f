"""Read queries for the approval queues, written to avoid N+1.

`my_approvals` is the routing of `approvals.services.routing` expressed in SQL:
a pending request is in a user's queue when its open step names them (role,
user, or the project's PM), or its escalation role once escalated — directly
or through a delegation they hold today — and segregation of duties does not
bar them or the person they would act for.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import reduce
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Page, Paginator
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.utils import timezone

from approvals.models import ApprovalDecision, ApprovalRequest, ApprovalStep, Delegation, approver_label
from approvals.registry import project_managers
from approvals.services.eligibility import DELEGATE_ROLES, delegate_refusal
from approvals.services.routing import user_roles_by_id
from approvals.services.subjects import display_subjects, load_subject, subject_prefetch
from kernel.errors import ApplicationError
from kernel.listing import PAGE_SIZE, paginate
from kernel.roles import PROJECT_MANAGER, cached_user_roles

Kind = ApprovalStep.ApproverKind
#: What a queue row shows of a request besides its subject.
QUEUE_RELATED = ("policy", "project", "contract", "requested_by")


def _active(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def _decided_by(user_id: int) -> Exists:
    return Exists(
        ApprovalDecision.objects.filter(Q(approver_id=user_id) | Q(on_behalf_of_id=user_id), request=OuterRef("pk"))
    )


#: `policy_id * _STEP_KEY + current_step` names a (policy, step order) pair in one integer (orders are small).
_STEP_KEY = 65536
_RANK_FIELD = IntegerField()  # of the overdue-first ordering (spares resolving it per query)


@dataclass(frozen=True)
class _Step:
    policy_id: int
    order: int
    kind: str
    role: str
    user_id: int | None
    escalation_role: str
    user_name: str | None

    @property
    def key(self) -> int:
        return self.policy_id * _STEP_KEY + self.order

    @property
    def label(self) -> str:
        return approver_label(self.kind, self.role, self.user_name)


def _steps() -> list[_Step]:
    """Every policy's steps (a few dozen rows): the queue matches requests' open steps against them here."""
    return [
        _Step(*row)
        for row in ApprovalStep.objects.order_by().values_list(
            "policy_id", "order", "approver_kind", "role", "user_id", "escalation_role", "user__username"
        )
    ]


def _at_steps(keys: list[int]) -> Q:
    """The request's open step is one of `keys` (`step_key` is aliased by `_queue`)."""
    return Q(step_key__in=keys)


def _may_decide(
    principal_id: int, roles: set[str], steps: list[_Step], *, delegate_roles: set[str] | None = None
) -> Q:
    """The open step names `principal_id`, and SoD does not bar them.

    Which steps name them is worked out here from `steps`, so the database gets a list of
    (policy, order) keys: it filters the pending requests on their own columns, sees how few
    qualify, and checks SoD on those alone (not on every decision the user ever took).
    With `delegate_roles` (a delegate acting for the principal) the step must also accept
    a role the delegate holds, as `eligibility.accepted_delegate_roles` says.
    """

    def accepted(step: _Step) -> bool:
        if delegate_roles is None:
            return True
        return (
            (step.kind == Kind.ROLE and step.role in delegate_roles)
            or step.escalation_role in delegate_roles
            or (step.kind == Kind.PROJECT_MANAGER and PROJECT_MANAGER in delegate_roles)
            or (step.kind == Kind.USER and bool(roles & delegate_roles & DELEGATE_ROLES))
        )

    steps = [step for step in steps if accepted(step)]
    named = [
        step.key
        for step in steps
        if (step.kind == Kind.USER and step.user_id == principal_id) or (step.kind == Kind.ROLE and step.role in roles)
    ]
    managed = [step.key for step in steps if step.kind == Kind.PROJECT_MANAGER]
    escalated = [step.key for step in steps if step.escalation_role in roles]
    parts = []
    if named:
        parts.append(_at_steps(named))
    if managed:
        manages_contract = project_managers().manages_contract(principal_id)
        is_pm = Q(project__project_manager_id=principal_id) | Q(project__isnull=True) & manages_contract
        parts.append(_at_steps(managed) & is_pm)
    if escalated:
        parts.append(Q(escalated=True) & _at_steps(escalated))
    if not parts:
        return Q(pk__in=[])
    return reduce(operator.or_, parts) & ~Q(prepared_by_id=principal_id) & ~_decided_by(principal_id)


#: On the request's user, set by the queue page: (day, queryset) of its queue, which the navigation's count
#: in the same request then reuses instead of reading the steps and delegations and building it again (a
#: request's user is loaded afresh by every request, like the roles memoised on it). Never evaluated itself.
_QUEUE_ATTR = "_approvals_queue"

#: The subject types of "invoices at my step" (the navigation's count for controllers).
INVOICE_SUBJECT_TYPES = ("invoice", "credit_note")
#: On the request's user, set by the unfiltered queue page: (day, how many of its requests are invoices),
#: counted in the page's own query (a second window count), so the navigation does not count again.
_INVOICE_COUNT_ATTR = "_approvals_invoice_count"


def _condition(user: Any, *, today: date, delegations: Iterable[Delegation] | None, steps: list[_Step]) -> Q:
    """Which pending requests `user` may decide now, directly or for whoever delegated to them."""
    if delegations is None:
        delegator_ids = set(
            Delegation.objects.filter(
                delegate_id=user.pk, starts_on__lte=today, ends_on__gte=today, delegator__is_active=True
            ).values_list("delegator_id", flat=True)
        )
    else:
        delegator_ids = {d.delegator_id for d in delegations}
    own_roles = set(cached_user_roles(user))  # the request's user: read once per request, shared with the screens
    roles = user_roles_by_id(delegator_ids) if delegator_ids else {}
    # An ineligible delegate acts for nobody. (Service users never see this queue: they cannot sign in.)
    if delegator_ids and delegate_refusal(user, own_roles):
        delegator_ids = set()
    # Deciding directly already requires the actor to be free of SoD bars; for a delegator too.
    condition = _may_decide(user.pk, own_roles, steps)
    if delegator_ids:
        actor_free = ~Q(prepared_by_id=user.pk) & ~_decided_by(user.pk)
        via_delegation = [
            _may_decide(d, roles.get(d, set()), steps, delegate_roles=own_roles) for d in sorted(delegator_ids)
        ]
        condition = actor_free & reduce(operator.or_, [condition, *via_delegation])
    return condition


def _queue(condition: Q, *, now: datetime) -> QuerySet[ApprovalRequest]:
    """The pending requests meeting `condition`, overdue first (nothing joined or prefetched for display)."""
    return (
        ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING)
        .alias(step_key=F("policy_id") * _STEP_KEY + F("current_step"))
        .filter(condition)
        .alias(overdue_rank=Case(When(sla_due_at__lt=now, then=Value(0)), default=Value(1), output_field=_RANK_FIELD))
        .order_by("overdue_rank", "sla_due_at", "pk")
    )


def delegations_held(user: Any, *, today: date) -> list[Delegation]:
    """The delegations `user` holds today from active delegators, with the delegators (the queue names them)."""
    return list(
        Delegation.objects.filter(
            delegate=user, starts_on__lte=today, ends_on__gte=today, delegator__is_active=True
        ).select_related("delegator")
    )


def my_approvals(
    user: Any, *, now: datetime | None = None, delegations: Iterable[Delegation] | None = None
) -> QuerySet[ApprovalRequest]:
    """Pending requests `user` can decide now (also for whoever delegated to them), overdue first.

    `delegations`: the ones `user` holds today from active delegators, when the caller has read them
    already; otherwise read here. Subjects are prefetched ready for display.
    """
    if not _active(user):
        return ApprovalRequest.objects.none()
    now = now or timezone.now()
    today = timezone.localdate(now)
    built = getattr(user, _QUEUE_ATTR, None)
    if delegations is None and built is not None and built[0] == today:
        qs = built[1]
    else:
        qs = _queue(_condition(user, today=today, delegations=delegations, steps=_steps()), now=now)
    return qs.select_related(*QUEUE_RELATED).prefetch_related(subject_prefetch())


@dataclass
class QueueEntry:
    """One request of a queue page as its row shows it: plain values read in one query, and its subject."""

    pk: int
    content_type_id: int
    object_id: int
    subject_type: str
    #: With only the fields its handler displays; None when the subject is gone.
    subject: Any
    amount: Decimal | None
    currency: str
    project_code: str | None
    contract_code: str | None
    #: Display name of the preparer; None: prepared by the system.
    prepared_by: str | None
    created_at: datetime
    sla_due_at: datetime
    current_step: int
    step_count: int
    #: Who decides the open step; "" when the policy no longer has that step.
    step_label: str
    escalated: bool
    escalation_reason: str


def _name(first: str | None, last: str | None, username: str | None) -> str:
    """`get_full_name() or get_username()` from the columns alone."""
    return f"{first or ''} {last or ''}".strip() or (username or "")


def _queue_entries(ids: list[int], steps: list[_Step]) -> list[QueueEntry]:
    """The requests `ids` in that order, with what a queue row shows: one query, and one per subject model."""
    if not ids:
        return []
    rows = (
        ApprovalRequest.objects.filter(pk__in=ids)
        .order_by()  # in the order of `ids`, below
        .values(
            "pk", "content_type_id", "object_id", "subject_type", "amount", "currency", "created_at", "sla_due_at",
            "policy_id", "current_step", "escalated", "escalation_reason", "prepared_by_id",
            project_code=F("project__code"),
            contract_code=F("contract__code"),
            prepared_first=F("prepared_by__first_name"),
            prepared_last=F("prepared_by__last_name"),
            prepared_username=F("prepared_by__username"),
        )
    )
    by_id = {row["pk"]: row for row in rows}
    subjects = display_subjects((row["content_type_id"], row["object_id"]) for row in by_id.values())
    reasons = dict(ApprovalRequest.EscalationReason.choices)
    by_key = {step.key: step for step in steps}
    step_counts = Counter(step.policy_id for step in steps)
    entries = []
    for pk in ids:
        row = by_id.get(pk)
        if row is None:
            continue
        step = by_key.get(row["policy_id"] * _STEP_KEY + row["current_step"])
        entries.append(
            QueueEntry(
                pk=pk,
                content_type_id=row["content_type_id"],
                object_id=row["object_id"],
                subject_type=row["subject_type"],
                subject=subjects.get((row["content_type_id"], row["object_id"])),
                amount=row["amount"],
                currency=row["currency"],
                project_code=row["project_code"],
                contract_code=row["contract_code"],
                prepared_by=(
                    _name(row["prepared_first"], row["prepared_last"], row["prepared_username"])
                    if row["prepared_by_id"] is not None
                    else None
                ),
                created_at=row["created_at"],
                sla_due_at=row["sla_due_at"],
                current_step=row["current_step"],
                step_count=step_counts[row["policy_id"]],
                step_label=step.label if step is not None else "",
                escalated=row["escalated"],
                escalation_reason=reasons.get(row["escalation_reason"], row["escalation_reason"]),
            )
        )
    return entries


#: Pages read with their count in one query; a number beyond (a hostile `?page=`) is counted first and
#: clamped to the last page, as `Paginator.get_page` does, before any offset reaches the database.
_FAST_PAGES = 100_000


def _page_number(page_number: str | None) -> int:
    """`Paginator.get_page`'s reading of the page parameter: anything but a whole number is page 1."""
    try:
        return int(page_number) if page_number is not None else 1
    except (TypeError, ValueError):
        return 1


def my_approvals_page(
    user: Any,
    *,
    now: datetime,
    delegations: Iterable[Delegation] | None = None,
    subject_type: str = "",
    overdue_only: bool = False,
    page_number: str | None = None,
) -> Page:
    """A page of `my_approvals` as `QueueEntry`s, optionally of one subject type or overdue only.

    The page's ids and the queue's size come in one query (`COUNT(*) OVER ()`) instead of running the
    queue's conditions twice; a page past the end falls back to counting first, as `Paginator.get_page`
    does. The rows are then read by id, apart: joined with the queue's conditions they make a query the
    database spends longer planning than running. The policies' steps are read once for both.
    """
    if not _active(user):
        return paginate([], page_number)
    steps = _steps()
    today = timezone.localdate(now)
    qs = _queue(_condition(user, today=today, delegations=delegations, steps=steps), now=now)
    if delegations is not None:
        setattr(user, _QUEUE_ATTR, (today, qs))
    if subject_type:
        qs = qs.filter(subject_type=subject_type)
    if overdue_only:
        qs = qs.filter(sla_due_at__lt=now)
    number = _page_number(page_number)
    page = None
    if 1 <= number <= _FAST_PAGES:
        offset = (number - 1) * PAGE_SIZE
        # With the whole queue (no filter), its invoices are counted too, for the navigation.
        whole = delegations is not None and not subject_type and not overdue_only
        invoices = (
            Window(Count("pk", filter=Q(subject_type__in=INVOICE_SUBJECT_TYPES)))
            if whole
            else Value(None, output_field=IntegerField())
        )
        found = list(
            qs.annotate(total=Window(Count("*")), invoices=invoices).values_list("pk", "total", "invoices")[
                offset : offset + PAGE_SIZE
            ]
        )
        if whole and (found or number == 1):
            setattr(user, _INVOICE_COUNT_ATTR, (today, found[0][2] if found else 0))
        if found or number == 1:
            paginator = Paginator(qs.values_list("pk", flat=True), PAGE_SIZE)
            paginator.count = found[0][1] if found else 0  # Paginator.count is a cached property
            page = paginator.page(number)
            ids = [pk for pk, _total, _invoices in found]
    if page is None:
        page = paginate(qs.values_list("pk", flat=True), page_number)
        ids = list(page.object_list)
    page.object_list = _queue_entries(ids, steps)
    return page


def my_approvals_count(user: Any) -> int:
    if not _active(user):
        return 0
    return my_approvals(user).prefetch_related(None).count()


def my_invoice_approvals_count(user: Any, *, today: date | None = None) -> int:
    """How many invoices and credit notes wait at a step `user` may decide now (the navigation's count);
    counted by the queue page's own query when this request showed the whole queue."""
    if not _active(user):
        return 0
    today = today or timezone.localdate()
    counted = getattr(user, _INVOICE_COUNT_ATTR, None)
    if counted is not None and counted[0] == today:
        return counted[1]
    return my_approvals(user).filter(subject_type__in=INVOICE_SUBJECT_TYPES).prefetch_related(None).count()


def can_decide(request: ApprovalRequest, user: Any) -> bool:
    """Whether `user` may decide the request's open step now (for showing the buttons)."""
    from approvals.services.requests import check_decider

    try:
        check_decider(request=request, user=user)
    except ApplicationError:
        return False
    return True


def approvals_of(subject: Any) -> QuerySet[ApprovalRequest]:
    """Every approval request of a subject, newest first, with its decisions and who made them."""
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import Prefetch

    return (
        ApprovalRequest.objects.filter(
            content_type=ContentType.objects.get_for_model(type(subject)), object_id=subject.pk
        )
        .select_related("policy", "requested_by")
        .prefetch_related(
            Prefetch(
                "decisions",
                queryset=ApprovalDecision.objects.select_related("approver", "on_behalf_of").order_by("step_order"),
            )
        )
        .order_by("-created_at", "-pk")
    )


def request_subject(approval: ApprovalRequest) -> Any:
    """The request's subject for its page (whole, with what its summary shows); None when it is gone."""
    return load_subject(approval.content_type_id, approval.object_id)


def earlier_approvals(approval: ApprovalRequest) -> QuerySet[ApprovalRequest]:
    """The subject's other approval requests, newest first, with what the request page lists of them."""
    return (
        ApprovalRequest.objects.filter(content_type_id=approval.content_type_id, object_id=approval.object_id)
        .exclude(pk=approval.pk)
        .only("pk", "status", "created_at", "outcome_reason")
        .order_by("-created_at", "-pk")
    )


def overdue_approvals(*, now: datetime | None = None) -> QuerySet[ApprovalRequest]:
    """Pending requests past their SLA, most overdue first (for finance's oversight)."""
    now = now or timezone.now()
    return (
        ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING, sla_due_at__lt=now)
        .select_related("policy", "project", "contract")
        .prefetch_related(subject_prefetch())
        .order_by("sla_due_at", "pk")
    )


# --- the approval requests of listed subjects (work queues show where each stands) ----------------


@dataclass
class Routing:
    """Where a subject's approval stands, for a queue row."""

    request: ApprovalRequest | None
    can_decide: bool

    @property
    def pending(self) -> bool:
        return self.request is not None and self.request.status == ApprovalRequest.Status.PENDING

    @property
    def step(self) -> ApprovalStep | None:
        if self.request is None:
            return None
        return next((s for s in self.request.policy.steps.all() if s.order == self.request.current_step), None)

    @property
    def step_count(self) -> int:
        return len(self.request.policy.steps.all()) if self.request else 0

    @property
    def last_decision(self) -> ApprovalDecision | None:
        decisions = list(self.request.decisions.all()) if self.request else []
        return decisions[-1] if decisions else None


def routings(user: Any, model: type, ids: list[int]) -> dict[int, Routing]:
    """Latest approval request of each subject and whether `user` may decide it now (four queries + my_approvals')."""
    if not ids:
        return {}
    content_type = ContentType.objects.get_for_model(model)
    latest: dict[int, ApprovalRequest] = {}
    for request in (
        ApprovalRequest.objects.filter(content_type=content_type, object_id__in=ids)
        .select_related("policy")
        .prefetch_related(
            Prefetch("policy__steps", queryset=ApprovalStep.objects.order_by("order")),
            Prefetch("decisions", queryset=ApprovalDecision.objects.select_related("approver").order_by("step_order")),
        )
        .order_by("object_id", "-pk")
    ):
        latest.setdefault(request.object_id, request)
    decidable = set(
        my_approvals(user).filter(content_type=content_type, object_id__in=ids).values_list("object_id", flat=True)
    )
    return {pk: Routing(latest.get(pk), pk in decidable) for pk in ids}


def pending_request(subject: Any) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(
        content_type=ContentType.objects.get_for_model(type(subject)),
        object_id=subject.pk,
        status=ApprovalRequest.Status.PENDING,
    ).first()
