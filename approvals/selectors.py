"""Read queries for the approval queues, written to avoid N+1.

`my_approvals` is the routing of `approvals.services.routing` expressed in SQL:
a pending request is in a user's queue when its open step names them (role,
user, or the project's PM), or its escalation role once escalated — directly
or through a delegation they hold today — and segregation of duties does not
bar them or the person they would act for.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Page
from django.db.models import Case, Exists, F, FilteredRelation, OuterRef, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone

from approvals.models import ApprovalDecision, ApprovalRequest, ApprovalStep, Delegation
from approvals.registry import project_managers
from approvals.services.eligibility import DELEGATE_ROLES, delegate_refusal
from approvals.services.routing import user_roles_by_id
from approvals.services.subjects import subject_prefetch
from kernel.errors import ApplicationError
from kernel.listing import paginate
from kernel.roles import PROJECT_MANAGER

Kind = ApprovalStep.ApproverKind
#: What a queue row shows of a request besides its subject.
QUEUE_RELATED = ("policy", "project", "contract", "requested_by")


def _active(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def _decided_by(user_id: int) -> Exists:
    return Exists(
        ApprovalDecision.objects.filter(Q(approver_id=user_id) | Q(on_behalf_of_id=user_id), request=OuterRef("pk"))
    )


def _may_decide(principal_id: int, roles: set[str], *, delegate_roles: set[str] | None = None) -> Q:
    """The open step names `principal_id`, and SoD does not bar them (on an annotated queryset).

    With `delegate_roles` (a delegate acting for the principal) the step must also accept
    a role the delegate holds, as `eligibility.accepted_delegate_roles` says.
    """
    manages_contract = project_managers().manages_contract(principal_id)
    is_pm = Q(project__project_manager_id=principal_id) | Q(project__isnull=True) & manages_contract
    named = [Q(step_kind=Kind.USER, step_user=principal_id), Q(step_kind=Kind.PROJECT_MANAGER) & is_pm]
    if roles:
        named += [Q(step_kind=Kind.ROLE, step_role__in=roles), Q(escalated=True, step_escalation_role__in=roles)]
    may = reduce(operator.or_, named) & ~Q(prepared_by_id=principal_id) & ~_decided_by(principal_id)
    if delegate_roles is None:
        return may
    accepted = [Q(step_kind=Kind.ROLE, step_role__in=delegate_roles), Q(step_escalation_role__in=delegate_roles)]
    if PROJECT_MANAGER in delegate_roles:
        accepted.append(Q(step_kind=Kind.PROJECT_MANAGER))
    if roles & delegate_roles & DELEGATE_ROLES:
        accepted.append(Q(step_kind=Kind.USER))
    return may & reduce(operator.or_, accepted)


def _with_open_step(qs: QuerySet[ApprovalRequest]) -> QuerySet[ApprovalRequest]:
    """The open step's approver columns on each request, through one join on (policy, order).

    A join the database can hash against the few steps there are, not four correlated look-ups per
    pending request (thousands of them wait at PMs' steps, and every queue reads them all).
    """
    open_step = FilteredRelation("policy__steps", condition=Q(policy__steps__order=F("current_step")))
    return qs.annotate(open_step=open_step).annotate(
        step_kind=F("open_step__approver_kind"),
        step_role=F("open_step__role"),
        step_user=F("open_step__user"),
        step_escalation_role=F("open_step__escalation_role"),
    )


def my_approvals(user: Any, *, now: datetime | None = None) -> QuerySet[ApprovalRequest]:
    """Pending requests `user` can decide now (also for whoever delegated to them), overdue first.

    Subjects are prefetched ready for display; three queries plus one per subject type.
    """
    if not _active(user):
        return ApprovalRequest.objects.none()
    now = now or timezone.now()
    today = timezone.localdate(now)
    delegator_ids = set(
        Delegation.objects.filter(
            delegate_id=user.pk, starts_on__lte=today, ends_on__gte=today, delegator__is_active=True
        ).values_list("delegator_id", flat=True)
    )
    roles = user_roles_by_id({user.pk, *delegator_ids})
    own_roles = roles.get(user.pk, set())
    # An ineligible delegate acts for nobody. (Service users never see this queue: they cannot sign in.)
    if delegator_ids and delegate_refusal(user, own_roles):
        delegator_ids = set()
    # The actor must be free of SoD bars too, whoever they act for.
    actor_free = ~Q(prepared_by_id=user.pk) & ~_decided_by(user.pk)
    direct = _may_decide(user.pk, own_roles)
    via_delegation = [_may_decide(d, roles.get(d, set()), delegate_roles=own_roles) for d in sorted(delegator_ids)]
    return (
        _with_open_step(ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING))
        .filter(actor_free & reduce(operator.or_, [direct, *via_delegation]))
        .annotate(overdue_rank=Case(When(sla_due_at__lt=now, then=Value(0)), default=Value(1)))
        .select_related(*QUEUE_RELATED)
        .prefetch_related(subject_prefetch())
        .order_by("overdue_rank", "sla_due_at", "pk")
    )


def page_of_requests(
    qs: QuerySet[ApprovalRequest],
    page_number: str | None,
    *,
    display: Callable[[QuerySet[ApprovalRequest]], QuerySet[ApprovalRequest]] = lambda page_qs: page_qs,
) -> Page:
    """A page of a queue: counted and sliced over the ids alone, then the page's requests loaded for display.

    The queue's conditions (open step, SoD, delegations) joined with everything the rows display make a
    query the database spends longer planning than running; apart, each plans in a few milliseconds.
    `display` adds the page query's `select_related`/`prefetch_related`. Order as in `qs`.
    """
    page = paginate(qs.select_related(None).prefetch_related(None).values_list("pk", flat=True), page_number)
    ids = list(page.object_list)
    loaded = display(
        qs.model._default_manager.filter(pk__in=ids).select_related(*QUEUE_RELATED).prefetch_related(subject_prefetch())
    )
    by_id = {request.pk: request for request in loaded}
    page.object_list = [by_id[pk] for pk in ids if pk in by_id]
    return page


def my_approvals_count(user: Any) -> int:
    if not _active(user):
        return 0
    return my_approvals(user).prefetch_related(None).count()


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
