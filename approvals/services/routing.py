"""Who may decide a step: the one definition, shared by the services and the queues.

A step names its approvers by role (group), by user, or as "the project's PM"
(the subject's project; for change orders and contract-wide invoices, the PMs of
the contract's projects). Once the request is escalated, members of the step's
escalation role may decide it too. A request escalates when its SLA passes, or
at once when segregation of duties bars every designated approver of a user or
PM step (e.g. the PM completed the milestone, or booked the time, themselves).

Segregation of duties bars the subject's preparer/owner/completer/submitter and
everyone who already decided a step of the request (as approver or principal).
A delegate acts for a delegator who is eligible and not barred.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model

from approvals.models import ApprovalRequest, ApprovalStep, Delegation
from approvals.registry import project_managers
from kernel.roles import ALL_ROLES

Kind = ApprovalStep.ApproverKind


@dataclass(frozen=True)
class StepRouting:
    """Roles and users that may decide the open step (before segregation of duties)."""

    roles: frozenset[str]
    user_ids: frozenset[int]

    def allows(self, user_id: int, user_roles: Iterable[str]) -> bool:
        return user_id in self.user_ids or bool(self.roles & set(user_roles))


def step_routing(step: ApprovalStep, *, pm_ids: Iterable[int], escalated: bool) -> StepRouting:
    roles: set[str] = set()
    users: set[int] = set()
    if step.approver_kind == Kind.ROLE:
        roles.add(step.role)
    elif step.approver_kind == Kind.USER and step.user_id:
        users.add(step.user_id)
    elif step.approver_kind == Kind.PROJECT_MANAGER:
        users.update(pm_ids)
    if escalated and step.escalation_role:
        roles.add(step.escalation_role)
    return StepRouting(frozenset(roles), frozenset(users))


def request_pm_ids(request: ApprovalRequest) -> frozenset[int]:
    """The PM of the request's project, else the PMs of its contract's projects."""
    if request.project_id:
        return frozenset({project_managers().of_project(request.project_id)} - {None})
    if request.contract_id:
        return frozenset(project_managers().of_contracts({request.contract_id}).get(request.contract_id, ()))
    return frozenset()


def requests_pm_ids(
    requests: Iterable[ApprovalRequest], *, known: dict[int, int | None] | None = None
) -> dict[int, frozenset[int]]:
    """`request_pm_ids` of many requests, in at most two queries.

    `known`: project id → manager the caller read in this transaction (with the subjects' locks), so
    those projects are not read again; the others are read here.
    """
    requests = list(requests)
    project_ids = {r.project_id for r in requests if r.project_id}
    contract_ids = {r.contract_id for r in requests if not r.project_id and r.contract_id}
    provider = project_managers()
    by_project = {pk: pm for pk, pm in (known or {}).items() if pk in project_ids}
    unknown = project_ids - by_project.keys()
    if unknown:
        by_project.update(provider.of_projects(unknown))
    by_contract = provider.of_contracts(contract_ids) if contract_ids else {}
    found: dict[int, frozenset[int]] = {}
    for request in requests:
        if request.project_id:
            found[request.pk] = frozenset({by_project.get(request.project_id)} - {None})
        elif request.contract_id:
            found[request.pk] = frozenset(by_contract.get(request.contract_id, ()))
        else:
            found[request.pk] = frozenset()
    return found


def designated_all_barred(step: ApprovalStep, *, pm_ids: Iterable[int], barred: Iterable[int]) -> bool:
    """True when a user or PM step has nobody left who may decide it (so it goes to the escalation role)."""
    barred = set(barred)
    if step.approver_kind == Kind.USER:
        return step.user_id is None or step.user_id in barred or not step.user.is_active
    if step.approver_kind == Kind.PROJECT_MANAGER:
        return not (set(pm_ids) - barred)
    return False


def user_roles_by_id(user_ids: Iterable[int]) -> dict[int, set[str]]:
    """Billable roles of active users, in one query (inactive users have none, as in kernel.roles)."""
    user_ids = set(user_ids)
    found: dict[int, set[str]] = defaultdict(set)
    if not user_ids:
        return found
    membership = get_user_model().groups.through.objects
    for user_id, role in membership.filter(
        user_id__in=user_ids, user__is_active=True, group__name__in=ALL_ROLES
    ).values_list("user_id", "group__name"):
        found[user_id].add(role)
    return found


def active_delegations_to(user: Any, *, today: date) -> list[Delegation]:
    """Delegations the user holds today from active delegators, oldest first."""
    return list(
        Delegation.objects.filter(
            delegate_id=user.pk, starts_on__lte=today, ends_on__gte=today, delegator__is_active=True
        )
        .select_related("delegator")
        .order_by("pk")
    )


def delegates_of(user_ids: Iterable[int], *, today: date) -> dict[int, set[int]]:
    """Active delegates of each user today (for reminders)."""
    found: dict[int, set[int]] = defaultdict(set)
    user_ids = set(user_ids)
    if not user_ids:
        return found
    for delegator_id, delegate_id in Delegation.objects.filter(
        delegator_id__in=user_ids, starts_on__lte=today, ends_on__gte=today, delegate__is_active=True
    ).values_list("delegator_id", "delegate_id"):
        found[delegator_id].add(delegate_id)
    return found
