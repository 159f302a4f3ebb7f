"""A new kind of approvable subject is a handler and one `register_subject` call: nothing in the engine changes.

The test makes projects approvable (a kind the engine has never heard of), gives the kind a policy,
and walks one project through request → approve and another through request → reject, with the
engine's segregation of duties and its outcome callbacks.
"""

from __future__ import annotations

from typing import Any

import pytest

from approvals.models import ApprovalPolicy, ApprovalRequest, ApprovalStep
from approvals.registry import SubjectHandler, handler_for, register_subject, subject_label, unregister_subject
from approvals.services import approval_decide, approval_request_open
from approvals.services.subjects import collect_facts, is_awaiting, subject_prefetch
from billing.models import Project
from kernel.errors import ApplicationError, SegregationOfDutiesError
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

KIND = "project_review"


class ProjectLaunchHandler(SubjectHandler):
    """An active project waits for a controller's review (a test-only kind)."""

    subject_type = KIND
    awaiting_status = Project.Status.ACTIVE
    related = ("contract",)
    display_related = ("contract",)

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, int, str]] = []

    def label(self, subject: Any) -> str:
        return f"project review {subject.code}"

    def preparer_id(self, subject: Any) -> int | None:
        return subject.project_manager_id

    def apply_approved(self, subject: Any, *, user: Any, comment: str) -> None:
        self.outcomes.append(("approved", subject.pk, comment))

    def apply_rejected(self, subject: Any, *, user: Any, reason: str) -> bool:
        self.outcomes.append(("rejected", subject.pk, reason))
        return True


@pytest.fixture
def handler():
    handler = ProjectLaunchHandler()
    register_subject(Project, handler)
    yield handler
    unregister_subject(Project)


@pytest.fixture
def launch_policy():
    policy = ApprovalPolicy.objects.create(name="Project review", subject_type=KIND)
    ApprovalStep.objects.create(policy=policy, order=1, approver_kind="role", role="finance_controller")
    return policy


def test_an_unregistered_model_is_not_approvable():
    project = ProjectFactory()

    with pytest.raises(ApplicationError) as refused:
        approval_request_open(subject=project, user=UserFactory())

    assert refused.value.code == "not_approvable"


def test_a_registered_kind_walks_request_then_approve(handler, launch_policy):
    requester = UserFactory(username="requester", groups=["finance_analyst"])
    controller = UserFactory(username="boss", groups=["finance_controller"])
    project = ProjectFactory(code="REVIEW-1", project_manager=None)
    assert is_awaiting(project)
    assert subject_label(project) == "project review REVIEW-1"
    [facts] = collect_facts([project])
    assert (facts.subject_type, facts.awaiting, facts.amount) == (KIND, True, None)

    request = approval_request_open(subject=project, user=requester)
    assert (request.status, request.subject_type, request.policy) == ("pending", KIND, launch_policy)

    approval_decide(request=request, user=controller, decision="approve", comment="go")

    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.APPROVED
    assert handler.outcomes == [("approved", project.pk, "go")]
    # The queues' prefetch knows the new kind too (one query per registered model).
    [loaded] = ApprovalRequest.objects.filter(pk=request.pk).prefetch_related(subject_prefetch())
    assert loaded.subject == project


def test_a_registered_kind_walks_request_then_reject_with_segregation_of_duties(handler, launch_policy):
    controller = UserFactory(username="boss", groups=["finance_controller"])
    manager = UserFactory(username="pm", groups=["project_manager", "finance_controller"])
    project = ProjectFactory(code="REVIEW-2", project_manager=manager)
    request = approval_request_open(subject=project, user=controller)

    with pytest.raises(SegregationOfDutiesError):
        approval_decide(request=request, user=manager, decision="approve")
    approval_decide(request=request, user=controller, decision="reject", comment="not yet")

    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.REJECTED
    assert handler.outcomes == [("rejected", project.pk, "not yet")]
    assert handler_for(project) is handler


def test_the_new_kind_is_a_subject_type_choice_without_a_migration(handler):
    """Policies, requests and the queue's filter offer the registered kinds: a new kind needs no approvals change."""
    from django.core.exceptions import ValidationError

    from approvals.registry import subject_type_choices

    assert (KIND, "Project review") in subject_type_choices()
    policy = ApprovalPolicy(name="Reviews", subject_type=KIND)
    policy.full_clean()  # the choice is valid as registered

    unregister_subject(Project)
    assert KIND not in dict(subject_type_choices())
    with pytest.raises(ValidationError):
        policy.full_clean()
    register_subject(Project, handler)


def test_billing_subject_types_keep_their_order_and_labels():
    """Billing registers first (INSTALLED_APPS order); apps above it (revenue's estimates) follow."""
    from approvals.registry import subject_type_choices

    assert subject_type_choices()[:6] == [
        ("invoice", "Invoice"),
        ("credit_note", "Credit note"),
        ("milestone", "Milestone"),
        ("change_order", "Change order"),
        ("time_entry", "Time entry"),
        ("expense", "Expense"),
    ]
