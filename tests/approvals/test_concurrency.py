"""Races the database settles (PostgreSQL): two people deciding one step, two openers of one subject."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.services import approval_decide, approval_request_open, approval_requests_open_bulk
from billing.models import Invoice
from kernel.errors import ConflictError
from tests.approvals.conftest import pending_invoice
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _in_parallel(work, args: list) -> list:
    """Run `work(arg)` in one thread per arg, released at the same instant; results or exceptions."""
    barrier = threading.Barrier(len(args))
    results: list = [None] * len(args)

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(args[index])
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(args))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_controllers_deciding_the_same_step_at_once_yield_one_decision_and_one_conflict():
    analyst = UserFactory(groups=["finance_analyst"])
    controllers = [UserFactory(groups=["finance_controller"]) for _ in range(2)]
    invoice = pending_invoice("50000.00")
    request = approval_request_open(subject=invoice)
    approval_decide(request=request, user=analyst, decision="approve")
    # Each controller's screen shows step 2 open.
    seen = [ApprovalRequest.objects.get(pk=request.pk) for _ in controllers]
    assert all(r.current_step == 2 for r in seen)

    results = _in_parallel(lambda i: approval_decide(request=seen[i], user=controllers[i], decision="approve"), [0, 1])

    conflicts = [r for r in results if isinstance(r, ConflictError)]
    successes = [r for r in results if isinstance(r, ApprovalRequest)]
    assert len(successes) == 1 and len(conflicts) == 1, results
    winner = ApprovalDecision.objects.get(request=request, step_order=2).approver
    assert winner.get_full_name() in conflicts[0].message
    assert "already decided by" in conflicts[0].message
    assert ApprovalDecision.objects.filter(request=request).count() == 2
    invoice.refresh_from_db()
    assert invoice.status == "posted" and invoice.approved_by == winner
    assert Invoice.objects.exclude(number=None).count() == 1


def test_approve_and_reject_of_the_same_step_at_once_yield_exactly_one_outcome():
    analysts = [UserFactory(groups=["finance_analyst"]) for _ in range(2)]
    invoice = pending_invoice("500.00")
    request = approval_request_open(subject=invoice)
    seen = [ApprovalRequest.objects.get(pk=request.pk) for _ in analysts]

    results = _in_parallel(
        lambda i: approval_decide(
            request=seen[i], user=analysts[i], decision=("approve", "reject")[i], comment=("", "Wrong rate")[i]
        ),
        [0, 1],
    )

    assert sum(isinstance(r, ConflictError) for r in results) == 1, results
    decision = ApprovalDecision.objects.get(request=request)
    request.refresh_from_db()
    invoice.refresh_from_db()
    if decision.decision == "approve":
        assert (request.status, invoice.status) == ("approved", "posted")
    else:
        assert (request.status, invoice.status) == ("rejected", "draft")


def test_two_openers_of_the_same_subject_get_the_same_request():
    invoices = [pending_invoice("500.00") for _ in range(5)]

    results = _in_parallel(
        lambda i: (
            approval_request_open(subject=invoices[0]).pk if i == 0 else approval_requests_open_bulk(subjects=invoices)
        ),
        [0, 1],
    )

    assert not any(isinstance(r, Exception) for r in results), results
    assert ApprovalRequest.objects.filter(status="pending").count() == 5
