"""Object-level permissions (django-rules) for billing objects.

These predicates are the one definition of "who may act on this object"; the
services call them and raise their own errors (segregation of duties first, so
the message says why), while admin, views and the API ask `user.has_perm(
"billing.approve_work", item)` to decide what to show. Role membership is
read from `kernel.roles`.
"""

from __future__ import annotations

from typing import Any

import rules

from kernel import roles


def _project_ids_of(obj: Any) -> set[int] | None:
    """The project(s) an object belongs to, or None when it has no project scope."""
    from billing.models import ChangeOrder, Contract, Invoice, Project

    if obj is None:
        return None
    if isinstance(obj, Project):
        return {obj.pk}
    if isinstance(obj, ChangeOrder):
        return set(obj.contract.projects.values_list("pk", flat=True))
    if isinstance(obj, Contract):
        return set(obj.projects.values_list("pk", flat=True))
    if isinstance(obj, Invoice):
        if obj.project_id:
            return {obj.project_id}
        return set(obj.contract.projects.values_list("pk", flat=True))
    project_id = getattr(obj, "project_id", None)
    return {project_id} if project_id else None


@rules.predicate
def is_active_user(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


@rules.predicate
def is_project_manager_of(user: Any, obj: Any) -> bool:
    """The user manages the object's project (for a contract or change order: any of its projects)."""
    if not is_active_user(user):
        return False
    project_ids = _project_ids_of(obj)
    if not project_ids:
        return False
    from billing.models import Project

    return Project.objects.filter(pk__in=project_ids, project_manager_id=user.pk).exists()


@rules.predicate
def owns_work(user: Any, item: Any) -> bool:
    """The time entry or expense is the user's own (their Person record)."""
    person = getattr(item, "person", None)
    return bool(person is not None and person.user_id is not None and person.user_id == getattr(user, "pk", None))


@rules.predicate
def completed_milestone(user: Any, milestone: Any) -> bool:
    return milestone is not None and milestone.completed_by_id is not None and milestone.completed_by_id == user.pk


@rules.predicate
def submitted_change_order(user: Any, change_order: Any) -> bool:
    return (
        change_order is not None
        and change_order.submitted_by_id is not None
        and change_order.submitted_by_id == user.pk
    )


def _role_predicate(*names: str) -> rules.Predicate:
    def check(user: Any) -> bool:
        return is_active_user(user) and roles.has_any_role(user, names)

    return rules.predicate(check, name=f"has_role:{','.join(names)}")


is_consultant = _role_predicate(roles.CONSULTANT)
is_project_manager = _role_predicate(roles.PROJECT_MANAGER)
is_finance = _role_predicate(roles.FINANCE_ANALYST, roles.FINANCE_CONTROLLER)
is_finance_controller = _role_predicate(roles.FINANCE_CONTROLLER)
is_collections = _role_predicate(roles.COLLECTIONS)
is_billing_admin = _role_predicate(roles.BILLING_ADMIN)
is_auditor = _role_predicate(roles.AUDITOR)

# Who may do what to one object. SoD conditions are part of the rule so the UI
# never offers an action the service would refuse.
can_create_work = is_active_user & (owns_work | is_project_manager_of | is_finance | is_billing_admin)
can_submit_work = is_active_user & (owns_work | is_project_manager_of | is_finance)
can_redraft_work = is_active_user & owns_work
can_decide_work = (is_project_manager_of | is_finance_controller) & ~owns_work
can_complete_milestone = is_project_manager_of
can_decide_milestone = (is_project_manager_of | is_finance_controller) & ~completed_milestone
can_submit_change_order = is_project_manager_of | is_billing_admin | is_finance
can_approve_change_order = (is_project_manager_of | is_finance_controller) & ~submitted_change_order
can_reject_change_order = is_project_manager_of | is_finance_controller
can_manage_project = is_project_manager_of | is_billing_admin | is_finance_controller
can_manage_contract = is_billing_admin | is_finance_controller
can_audit = is_auditor

rules.add_perm("billing.submit_work", can_submit_work)
rules.add_perm("billing.redraft_work", can_redraft_work)
rules.add_perm("billing.approve_work", can_decide_work)
rules.add_perm("billing.reject_work", can_decide_work)
rules.add_perm("billing.reopen_work", can_decide_work)
rules.add_perm("billing.complete_milestone", can_complete_milestone)
rules.add_perm("billing.approve_milestone", can_decide_milestone)
rules.add_perm("billing.submit_change_order", can_submit_change_order)
rules.add_perm("billing.approve_change_order", can_approve_change_order)
rules.add_perm("billing.reject_change_order", can_reject_change_order)
rules.add_perm("billing.manage_project", can_manage_project)
rules.add_perm("billing.manage_contract", can_manage_contract)
