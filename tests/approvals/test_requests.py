"""Opening requests, multi-step flows, outcomes on the subjects, delegation, segregation of duties."""

from __future__ import annotations

import datetime
import math
from decimal import Decimal

import pytest
import time_machine
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.services import (
    approval_decide,
    approval_reject,
    approval_request_cancel,
    approval_request_open,
    approval_requests_cancel_for,
    approval_requests_open_bulk,
    delegation_create,
)
from billing.models import ChangeOrder, InvoiceNumberSequence, Milestone, TimeEntry
from kernel.errors import (
    ApplicationError,
    ConflictError,
    InvalidTransitionError,
    PermissionDeniedError,
    SegregationOfDutiesError,
)
from tests.approvals.conftest import (
    completed_milestone,
    credit_note,
    pending_invoice,
    person_of,
    submitted_change_order,
    submitted_time,
)
from tests.factories import (
    ContractFactory,
    ExpenseFactory,
    FxRateFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2025, 4, 2, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def approve(request, user, comment=""):
    return approval_decide(request=request, user=user, decision="approve", comment=comment)


# --- opening -------------------------------------------------------------------------------------


def test_open_routes_to_the_first_step_with_a_snapshot(preparer):
    invoice = pending_invoice("50000.00", prepared_by=preparer)

    request = approval_request_open(subject=invoice, user=preparer)

    assert request.status == "pending"
    assert request.subject == invoice
    assert request.subject_type == "invoice"
    assert request.policy.name == "Invoice 10,000 to 100,000"
    assert request.current_step == 1
    assert request.step_opened_at == NOW
    assert request.sla_due_at == NOW + datetime.timedelta(hours=24)
    assert (request.amount, request.currency, request.entity_amount) == (
        Decimal("50000.00"),
        "EUR",
        Decimal("50000.00"),
    )
    assert request.prepared_by == preparer and request.requested_by == preparer
    assert request.contract_id == invoice.contract_id
    assert not request.escalated
    assert request.history.get().history_user == preparer


def test_open_is_idempotent():
    invoice = pending_invoice()

    first = approval_request_open(subject=invoice)
    second = approval_request_open(subject=invoice)

    assert first.pk == second.pk
    assert ApprovalRequest.objects.count() == 1


def test_only_subjects_awaiting_approval_are_routed():
    with pytest.raises(InvalidTransitionError, match="is draft"):
        approval_request_open(subject=InvoiceFactory(status="draft"))
    with pytest.raises(InvalidTransitionError, match="is approved"):
        approval_request_open(subject=TimeEntryFactory(status="approved"))


def test_no_matching_policy_is_a_clear_error():
    from approvals.models import ApprovalPolicy

    ApprovalPolicy.objects.filter(subject_type="expense").update(active=False)

    with pytest.raises(ApplicationError, match="No active approval policy matches expense") as exc:
        approval_request_open(subject=ExpenseFactory(status="submitted"))
    assert exc.value.code == "no_policy"


def test_unique_pending_request_per_subject_is_a_database_rule():
    request = approval_request_open(subject=pending_invoice())

    with pytest.raises(IntegrityError):
        ApprovalRequest.objects.create(
            content_type=request.content_type,
            object_id=request.object_id,
            subject_type="invoice",
            policy=request.policy,
            current_step=1,
            sla_due_at=NOW,
        )


# --- bulk opening ----------------------------------------------------------------------------------


def _bulk_subjects(count: int):
    usd = ContractFactory(currency="USD")
    FxRateFactory(from_currency="USD", to_currency="EUR", date=datetime.date(2025, 3, 31), rate=Decimal("0.9"))
    subjects = []
    for i in range(count):
        invoice = pending_invoice(Decimal("4000.00") * (i + 1), contract=usd if i % 3 == 0 else ContractFactory())
        if i % 4 == 0:
            InvoiceExceptionFactory(invoice=invoice, code="ANOMALY", severity="warning")
        subjects.append(invoice)
    subjects += [submitted_time() for _ in range(count // 4)]
    subjects += [submitted_change_order(cap_delta="30000.00") for _ in range(count // 4)]
    subjects += [completed_milestone() for _ in range(count // 4)]
    return subjects


def _queries_to_open(subjects) -> tuple[int, int]:
    ContentType.objects.get_for_models(*{type(s) for s in subjects})  # warm the content-type cache
    with CaptureQueriesContext(connection) as ctx:
        opened = approval_requests_open_bulk(subjects=subjects)
    return opened, len(ctx.captured_queries)


def test_bulk_open_takes_a_bounded_number_of_queries():
    few = _bulk_subjects(8)
    many = _bulk_subjects(40)

    opened_few, queries_few = _queries_to_open(few)
    opened_many, queries_many = _queries_to_open(many)

    assert (opened_few, opened_many) == (len(few), len(many))
    extra = _insert_statements(len(many)) - _insert_statements(len(few))  # 0 on PostgreSQL, 2 on SQLite
    assert queries_many == queries_few + extra
    assert queries_few <= 20


def _insert_statements(count: int) -> int:
    """INSERTs for `count` new requests and their history rows: one each on PostgreSQL.

    SQLite binds at most 999 parameters a statement (Django's bound for it), so Django splits
    a bulk insert into batches of 999 // columns rows: 70 requests take two INSERTs there.
    """
    statements = 0
    for model in (ApprovalRequest, ApprovalRequest.history.model):
        columns = [f for f in model._meta.concrete_fields if not f.primary_key]
        statements += math.ceil(count / connection.ops.bulk_batch_size(columns, [None] * count))
    return statements


def test_bulk_open_routes_like_the_single_opener_and_skips_open_ones():
    subjects = _bulk_subjects(8)
    already = approval_request_open(subject=subjects[0])

    assert approval_requests_open_bulk(subjects=subjects + subjects[:2]) == len(subjects) - 1
    assert approval_requests_open_bulk(subjects=subjects) == 0

    for subject in subjects:
        request = approval_request_open(subject=subject)  # returns the pending one
        from approvals.services import approval_policy_for

        assert request.policy == approval_policy_for(subject), subject
    assert ApprovalRequest.objects.filter(pk=already.pk, status="pending").exists()
    assert ApprovalRequest.history.filter(history_type="+").count() == len(subjects)


def test_bulk_open_is_all_or_nothing():
    subjects = [pending_invoice(), InvoiceFactory(status="exception")]

    with pytest.raises(InvalidTransitionError):
        approval_requests_open_bulk(subjects=subjects)
    assert ApprovalRequest.objects.count() == 0


# --- multi-step flows ------------------------------------------------------------------------------


def test_two_step_invoice_is_approved_and_numbered_after_the_last_step(preparer, analyst, controller):
    invoice = pending_invoice("50000.00", prepared_by=preparer)
    request = approval_request_open(subject=invoice)

    approve(request, analyst, "Lines checked")
    assert (request.status, request.current_step) == ("pending", 2)
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval" and invoice.number is None

    approve(request, controller)
    assert request.status == "approved"
    assert request.decided_at == NOW
    invoice.refresh_from_db()
    assert invoice.status == "posted"  # no ERP configured: posted on approval
    assert invoice.number and invoice.approved_by == controller
    decisions = list(request.decisions.values_list("step_order", "approver__username", "decision", "comment"))
    assert decisions == [(1, "analyst", "approve", "Lines checked"), (2, "controller", "approve", "")]


def test_three_step_invoice_needs_two_different_controllers(analyst, controller, controller2):
    invoice = pending_invoice("150000.00")
    request = approval_request_open(subject=invoice)
    approve(request, analyst)
    approve(request, controller)

    with pytest.raises(SegregationOfDutiesError, match="You already decided step 2 of this approval"):
        approve(request, controller)

    approve(request, controller2)
    assert request.status == "approved"
    assert request.decisions.count() == 3


def test_the_next_step_gets_a_fresh_sla(analyst):
    request = approval_request_open(subject=pending_invoice("50000.00"))
    later = NOW + datetime.timedelta(hours=30)
    with time_machine.travel(later, tick=False):
        approve(request, analyst)

    assert request.step_opened_at == later
    assert request.sla_due_at == later + datetime.timedelta(hours=48)
    assert request.decisions.get().step_opened_at == NOW


def test_only_the_steps_approvers_may_decide(analyst, controller):
    pm = UserFactory(groups=["project_manager"])
    request = approval_request_open(subject=pending_invoice("50000.00"))

    with pytest.raises(PermissionDeniedError, match=r"Step 1 of the approval of invoice .* is for finance analyst"):
        approve(request, controller)
    with pytest.raises(PermissionDeniedError):
        approve(request, pm)
    assert not ApprovalDecision.objects.exists()


def test_credit_note_is_approved_by_a_controller(controller):
    note = credit_note("300.00")
    request = approval_request_open(subject=note)

    approve(request, controller)

    note.refresh_from_db()
    assert note.status == "posted" and note.number.startswith(f"{note.entity.invoice_prefix}-CN-")


def test_time_entry_is_approved_by_its_pm():
    entry = submitted_time()
    request = approval_request_open(subject=entry)

    approve(request, entry.project.project_manager)

    entry.refresh_from_db()
    assert entry.status == TimeEntry.Status.APPROVED and entry.approved_by == entry.project.project_manager
    assert request.status == "approved"


def test_another_projects_pm_may_not_approve_time():
    entry = submitted_time()
    request = approval_request_open(subject=entry)

    with pytest.raises(PermissionDeniedError, match="project manager"):
        approve(request, ProjectFactory().project_manager)


def test_expense_is_approved_by_its_pm():
    expense = ExpenseFactory(status="submitted")
    request = approval_request_open(subject=expense)

    approve(request, expense.project.project_manager)

    expense.refresh_from_db()
    assert expense.status == "approved"


def test_change_order_growing_the_cap_needs_the_pm_then_a_controller(controller):
    change_order = submitted_change_order(cap="100000.00", cap_delta="50000.00", submitted_by=controller)
    request = approval_request_open(subject=change_order)
    pm = change_order.contract.projects.get().project_manager

    approve(request, pm)
    change_order.refresh_from_db()
    assert change_order.status == "submitted"

    other_controller = UserFactory(groups=["finance_controller"])
    approve(request, other_controller, "Budget confirmed")
    change_order.refresh_from_db()
    assert change_order.status == ChangeOrder.Status.APPROVED
    assert change_order.decided_by == other_controller and change_order.decision_reason == "Budget confirmed"


def test_a_change_order_can_be_approved_by_a_pm_of_another_of_its_contracts_projects():
    change_order = submitted_change_order(cap_delta="1000.00")  # submitted by the first project's PM
    second_pm = ProjectFactory(contract=change_order.contract).project_manager
    request = approval_request_open(subject=change_order)
    assert not request.escalated

    approve(request, second_pm)

    change_order.refresh_from_db()
    assert change_order.status == "approved"


# --- segregation of duties -------------------------------------------------------------------------


def test_the_preparer_cannot_approve_their_invoice(preparer):
    request = approval_request_open(subject=pending_invoice(prepared_by=preparer))

    with pytest.raises(SegregationOfDutiesError, match=r"You prepared invoice DRAFT-\d+; someone else"):
        approve(request, preparer)


def test_nobody_approves_their_own_time_even_as_the_projects_pm(controller):
    project = ProjectFactory()
    pm = project.project_manager
    entry = submitted_time(project=project, person=person_of(pm))
    request = approval_request_open(subject=entry)

    with pytest.raises(SegregationOfDutiesError, match=r"Time entry \d+ is your own work"):
        approve(request, pm)

    # The PM was the only designated approver: the step went straight to the escalation role.
    assert request.escalated and request.escalation_reason == "no_eligible_approver"
    approve(request, controller)
    entry.refresh_from_db()
    assert entry.status == "approved" and entry.approved_by == controller


def test_nobody_approves_their_own_expense():
    project = ProjectFactory()
    expense = ExpenseFactory(status="submitted", project=project, person=person_of(project.project_manager))
    request = approval_request_open(subject=expense)

    with pytest.raises(SegregationOfDutiesError, match="your own work"):
        approve(request, project.project_manager)


def test_the_pm_who_completed_a_milestone_cannot_approve_it_a_controller_can(controller):
    milestone = completed_milestone()
    pm = milestone.project.project_manager
    request = approval_request_open(subject=milestone)

    with pytest.raises(SegregationOfDutiesError, match=r"You marked milestone .* completed"):
        approve(request, pm)

    assert request.escalated
    approve(request, controller)
    milestone.refresh_from_db()
    assert milestone.status == Milestone.Status.APPROVED and milestone.approved_by == controller


def test_a_milestone_completed_by_someone_else_goes_to_its_pm():
    milestone = completed_milestone(completed_by=UserFactory(groups=["finance_controller"]))
    request = approval_request_open(subject=milestone)
    assert not request.escalated

    approve(request, milestone.project.project_manager)

    milestone.refresh_from_db()
    assert milestone.status == "approved"


def test_the_submitter_of_a_change_order_cannot_approve_it():
    change_order = submitted_change_order(cap_delta="1000.00")
    submitter = change_order.submitted_by
    request = approval_request_open(subject=change_order)

    with pytest.raises(SegregationOfDutiesError, match="You submitted change order"):
        approve(request, submitter)


def test_deciding_a_settled_request_is_a_conflict(controller, controller2):
    request = approval_request_open(subject=credit_note())
    approve(request, controller)

    assert request.status == "approved"
    with pytest.raises(
        ConflictError, match=f"Step 1 of this approval was already decided by {controller.get_full_name()}"
    ):
        approve(request, controller2)


# --- rejection -------------------------------------------------------------------------------------


def test_reject_needs_a_reason(analyst):
    request = approval_request_open(subject=pending_invoice())

    for blank in ("", "   "):
        with pytest.raises(ApplicationError, match="A reason is required") as exc:
            approval_decide(request=request, user=analyst, decision="reject", comment=blank)
        assert exc.value.code == "reason_required"
    assert request.status == "pending" and not request.decisions.exists()


def test_unknown_decision_is_refused(analyst):
    request = approval_request_open(subject=pending_invoice())

    with pytest.raises(ApplicationError, match="Unknown decision"):
        approval_decide(request=request, user=analyst, decision="maybe")


def test_rejecting_an_invoice_sends_it_back_to_draft_with_the_reason(analyst, controller):
    invoice = pending_invoice("50000.00")
    request = approval_request_open(subject=invoice)
    approve(request, analyst)

    approval_reject(request=request, user=controller, reason="Wrong PO number")

    assert request.status == "rejected" and request.outcome_reason == "Wrong PO number"
    invoice.refresh_from_db()
    assert invoice.status == "draft"
    assert invoice.history.first().history_change_reason == "Rejected: Wrong PO number"
    assert request.decisions.get(step_order=2).comment == "Wrong PO number"


def test_rejecting_time_returns_it_to_its_owner_with_the_reason():
    entry = submitted_time()
    request = approval_request_open(subject=entry)

    approval_reject(request=request, user=entry.project.project_manager, reason="Book this on the workshop task")

    entry.refresh_from_db()
    assert entry.status == "rejected" and entry.rejection_reason == "Book this on the workshop task"


def test_rejecting_a_change_order(controller):
    change_order = submitted_change_order(cap_delta="1000.00")
    second_pm = ProjectFactory(contract=change_order.contract).project_manager
    request = approval_request_open(subject=change_order)

    approval_reject(request=request, user=second_pm, reason="Not signed yet")

    change_order.refresh_from_db()
    assert change_order.status == "rejected" and change_order.decision_reason == "Not signed yet"


def test_rejecting_a_milestone_is_recorded_on_the_request_and_the_milestone_stays_completed(controller):
    milestone = completed_milestone(completed_by=controller)
    request = approval_request_open(subject=milestone)

    approval_reject(request=request, user=milestone.project.project_manager, reason="Acceptance not signed")

    milestone.refresh_from_db()
    assert milestone.status == "completed"
    assert request.status == "rejected" and request.outcome_reason == "Acceptance not signed"
    # It can be routed again once the evidence is there.
    assert approval_request_open(subject=milestone).pk != request.pk


def test_a_subject_sent_back_and_resubmitted_gets_a_new_request(analyst):
    from billing.services.work import work_redraft, work_submit

    entry = submitted_time()
    first = approval_request_open(subject=entry)
    approval_reject(request=first, user=entry.project.project_manager, reason="Wrong project")
    work_redraft(item=entry, user=entry.person.user)
    work_submit(item=entry, user=entry.person.user)

    second = approval_request_open(subject=entry)

    assert second.pk != first.pk and second.status == "pending"
    assert ApprovalRequest.objects.filter(object_id=entry.pk).count() == 2


# --- delegation ------------------------------------------------------------------------------------


def test_a_delegate_decides_on_behalf_of_the_delegator_and_the_record_says_so(controller):
    out_of_office = UserFactory(username="ooo", groups=["finance_analyst"])
    # Not an analyst (so not an approver of step 1 themselves), but a role step 1 accepts: its escalation role.
    deputy = UserFactory(username="deputy", groups=["finance_controller"])
    delegation_create(
        delegator=out_of_office,
        delegate=deputy,
        starts_on=datetime.date(2025, 4, 1),
        ends_on=datetime.date(2025, 4, 11),
        reason="Holiday",
        user=out_of_office,
    )
    request = approval_request_open(subject=pending_invoice("50000.00"))

    approve(request, deputy, "Checked for ooo")

    decision = request.decisions.get()
    assert decision.approver == deputy and decision.on_behalf_of == out_of_office
    assert str(decision) == "Step 1: Approve by deputy on behalf of ooo"
    approve(request, controller)
    assert request.status == "approved"


def test_the_delegator_and_delegate_count_as_one_person_across_steps():
    analyst_away = UserFactory(groups=["finance_analyst"])
    controller_deputy = UserFactory(groups=["finance_controller"])
    delegation_create(
        delegator=analyst_away,
        delegate=controller_deputy,
        starts_on=datetime.date(2025, 4, 1),
        ends_on=datetime.date(2025, 4, 30),
        user=analyst_away,
    )
    request = approval_request_open(subject=pending_invoice("50000.00"))
    approve(request, controller_deputy)  # step 1 (analyst) on behalf of analyst_away
    assert request.decisions.get().on_behalf_of == analyst_away

    with pytest.raises(SegregationOfDutiesError, match="already decided step 1"):
        approve(request, controller_deputy)


def test_a_delegate_cannot_act_for_the_preparer(preparer):
    deputy = UserFactory(groups=["finance_controller"])
    delegation_create(delegator=preparer, delegate=deputy, starts_on=NOW.date(), ends_on=NOW.date(), user=preparer)
    request = approval_request_open(subject=pending_invoice(prepared_by=preparer))

    with pytest.raises(SegregationOfDutiesError, match=r"prepared invoice .*, so you cannot decide step 1 on"):
        approve(request, deputy)


def test_an_expired_delegation_gives_no_rights():
    pm_away = ProjectFactory().project_manager
    deputy = UserFactory(groups=["project_manager"])
    entry = submitted_time(project=pm_away.managed_projects.get())
    with time_machine.travel(datetime.datetime(2025, 3, 1, tzinfo=datetime.UTC)):
        delegation_create(
            delegator=pm_away,
            delegate=deputy,
            starts_on=datetime.date(2025, 3, 1),
            ends_on=datetime.date(2025, 3, 31),
            user=pm_away,
        )
    request = approval_request_open(subject=entry)

    with pytest.raises(PermissionDeniedError, match="hold no delegation"):
        approve(request, deputy)


def test_a_controller_deputising_for_a_pm_approves_time_on_their_behalf():
    entry = submitted_time()
    pm = entry.project.project_manager
    deputy = UserFactory(groups=["finance_controller"])
    delegation_create(delegator=pm, delegate=deputy, starts_on=NOW.date(), ends_on=NOW.date(), user=pm)
    request = approval_request_open(subject=entry)

    approve(request, deputy)

    assert request.decisions.get().on_behalf_of == pm
    entry.refresh_from_db()
    assert entry.status == "approved" and entry.approved_by == deputy


def test_a_delegate_on_the_last_step_also_needs_the_subject_services_own_permission():
    """Known limit: billing's work_approve only accepts the project's PM or a controller as the actor.

    A PM's deputy without either is refused by the subject's service, and nothing is recorded.
    """
    entry = submitted_time()
    pm = entry.project.project_manager
    deputy = ProjectFactory().project_manager  # a PM, but of another project
    delegation_create(delegator=pm, delegate=deputy, starts_on=NOW.date(), ends_on=NOW.date(), user=pm)
    request = approval_request_open(subject=entry)

    with pytest.raises(PermissionDeniedError, match=r"You decided on behalf of .* cannot take your decision"):
        approve(request, deputy)

    request.refresh_from_db()
    assert request.status == "pending" and not request.decisions.exists()


def test_delegation_rules():
    user, other = UserFactory(), UserFactory(groups=["project_manager"])
    with pytest.raises(ApplicationError, match="Choose someone else"):
        delegation_create(delegator=user, delegate=user, starts_on=NOW.date(), ends_on=NOW.date(), user=user)
    with pytest.raises(ApplicationError, match="on or after the start"):
        delegation_create(
            delegator=user, delegate=other, starts_on=NOW.date(), ends_on=datetime.date(2025, 4, 1), user=user
        )
    with pytest.raises(PermissionDeniedError):
        delegation_create(delegator=user, delegate=other, starts_on=NOW.date(), ends_on=NOW.date(), user=other)
    admin = UserFactory(groups=["billing_admin"])
    delegation = delegation_create(delegator=user, delegate=other, starts_on=NOW.date(), ends_on=NOW.date(), user=admin)
    assert delegation.created_by == admin


# --- races and stale screens -----------------------------------------------------------------------


def test_deciding_a_step_someone_else_decided_meanwhile_is_a_conflict_naming_them(analyst):
    other = UserFactory(username="quick", first_name="Quinn", last_name="Quick", groups=["finance_analyst"])
    request = approval_request_open(subject=pending_invoice("50000.00"))
    stale = ApprovalRequest.objects.get(pk=request.pk)
    approve(request, other)

    with pytest.raises(ConflictError, match="Step 1 of this approval was already decided by Quinn Quick"):
        approve(stale, analyst)
    assert request.decisions.count() == 1


def test_one_decision_per_step_is_a_database_rule(analyst):
    request = approval_request_open(subject=pending_invoice("50000.00"))
    approve(request, analyst)

    with pytest.raises(IntegrityError):
        ApprovalDecision.objects.create(request=request, step_order=1, approver=analyst, decision="approve")


# --- cancelling ------------------------------------------------------------------------------------


def test_cancel_needs_a_reason_and_frees_the_subject_for_a_new_request(analyst):
    invoice = pending_invoice()
    request = approval_request_open(subject=invoice)

    with pytest.raises(ApplicationError, match="reason"):
        approval_request_cancel(request=request, user=analyst, reason="")
    approval_request_cancel(request=request, user=None, reason="Invoice revalidated")  # the system, with the subject

    assert request.status == "cancelled" and request.outcome_reason == "Invoice revalidated"
    with pytest.raises(ConflictError, match="already cancelled"):
        approve(request, analyst)
    assert approval_request_open(subject=invoice).pk != request.pk


def test_cancel_by_an_outsider_is_refused_and_the_system_may_cancel():
    invoice = pending_invoice()
    request = approval_request_open(subject=invoice)

    with pytest.raises(PermissionDeniedError):
        approval_request_cancel(request=request, user=UserFactory(groups=["consultant"]), reason="No")
    assert approval_requests_cancel_for(subject=invoice, reason="Draft cancelled") == 1
    assert approval_requests_cancel_for(subject=invoice, reason="Draft cancelled") == 0


def test_the_request_keeps_a_transition_log():
    from django_fsm_log.models import StateLog

    entry = submitted_time()
    request = approval_request_open(subject=entry)
    approve(request, entry.project.project_manager)

    log = StateLog.objects.for_(request).get()
    assert (log.source_state, log.state, log.by) == ("pending", "approved", entry.project.project_manager)
    assert timezone.now() == NOW


def test_a_decision_recorded_behind_the_services_back_still_wins_by_the_unique_constraint(analyst):
    """The constraint's IntegrityError rolls the decision back and comes out as a ConflictError naming who decided."""
    other = UserFactory(first_name="Dana", last_name="Direct", groups=["finance_analyst"])
    request = approval_request_open(subject=pending_invoice("50000.00"))
    ApprovalDecision.objects.create(request=request, step_order=1, approver=other, decision="approve")

    with pytest.raises(ConflictError, match="Step 1 of this approval was already decided by Dana Direct"):
        approve(request, analyst)
    request.refresh_from_db()
    assert request.current_step == 1 and request.decisions.count() == 1


def test_ending_a_delegation_early():
    from approvals.models import Delegation
    from approvals.services import delegation_end

    user, deputy = UserFactory(), UserFactory(groups=["finance_analyst"])
    running = delegation_create(
        delegator=user,
        delegate=deputy,
        starts_on=datetime.date(2025, 3, 25),
        ends_on=datetime.date(2025, 4, 30),
        user=user,
    )
    future = delegation_create(
        delegator=user,
        delegate=deputy,
        starts_on=datetime.date(2025, 5, 1),
        ends_on=datetime.date(2025, 5, 9),
        user=user,
    )

    assert delegation_end(delegation=running, user=user).ends_on == datetime.date(2025, 4, 1)
    assert delegation_end(delegation=future, user=user) is None
    assert list(Delegation.objects.values_list("pk", flat=True)) == [running.pk]
    with pytest.raises(PermissionDeniedError):
        delegation_end(delegation=running, user=deputy)


# --- what a decision reads -------------------------------------------------------------------------


def _selects_by_table(captured) -> dict[str, int]:
    """SELECTs per table (the FROM clause, each part of a UNION), to show what a decision reads and how often."""
    counts: dict[str, int] = {}
    for query in captured.captured_queries:
        for part in query["sql"].split(" UNION ALL "):
            part = part.lstrip("(")
            if part.startswith("SELECT") and ' FROM "' in part:
                table = part.split(' FROM "', 1)[1].split('"', 1)[0]
                counts[table] = counts.get(table, 0) + 1
    return counts


def test_deciding_reads_each_thing_once_under_the_locks(analyst, controller):
    """The open step, the next one, earlier decisions and roles are read once per decision, under the locks.

    A step decision on role steps reads no project managers; the decision's insert needs no savepoint and the
    caller's instance is brought in step without reading the request back. Settling the invoice through its
    billing service reads the decider's roles only once too (the engine's read serves invoice_approve's check),
    locks the number counter without a savepoint and reads no tax rules.
    """
    invoice = pending_invoice("50000.00")  # two role steps: analyst, then controller
    request = approval_request_open(subject=invoice)
    ContentType.objects.get_for_models(type(invoice), ApprovalRequest)  # warm the content-type cache
    InvoiceNumberSequence.objects.create(  # not the series' first number (that one creates the counter)
        entity_id=invoice.entity_id, year=invoice.issue_date.year, series=invoice.kind, last_number=41
    )

    with CaptureQueriesContext(connection) as step:
        approve(request, analyst)
    assert (request.status, request.current_step) == ("pending", 2)
    with CaptureQueriesContext(connection) as settle:
        approve(request, controller)
    assert request.status == "approved"
    invoice.refresh_from_db()
    assert invoice.status == "posted" and invoice.number.endswith("-000042")

    reads = _selects_by_table(step)
    assert reads == {
        "billing_invoice": 1,  # the subject, locked
        "approvals_approvalrequest": 1,  # the request, locked
        "approvals_approvalstep": 1,
        "approvals_approvaldecision": 1,
        "auth_group": 1,  # the decider's roles ...
        "auth_user": 1,  # ... and whether they are an API service user, in the same query (a UNION)
    }
    assert len(step) == 11  # 5 reads, SAVEPOINT/RELEASE (the test's transaction), 2 INSERTs, UPDATE, INSERT
    settled_reads = _selects_by_table(settle)
    assert settled_reads["auth_group"] == 1
    assert settled_reads["approvals_approvalstep"] == 1
    assert "billing_project" not in settled_reads
    assert "billing_taxrule" not in settled_reads  # the rule-table engine records nothing: no rules read
    assert len(settle) == 24
