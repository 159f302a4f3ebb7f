"""A closed period's journals go to the ERP through the outbox; estimates are approved through the engine."""

from __future__ import annotations

from decimal import Decimal

import pytest

from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from integrations.erp.base import ErpAdapter
from integrations.models import OutboxMessage
from integrations.services.outbox import outbox_deliver
from integrations.simulator import ErpSimulator
from kernel.errors import ApplicationError, PermissionDeniedError
from revenue.models import Estimate, JournalEntry, RevenueSchedule
from revenue.services.close import revenue_close
from revenue.services.estimates import estimate_propose
from tests.factories import UserFactory

from .helpers import D, contract, controller, issue, milestone, work

pytestmark = pytest.mark.django_db


@pytest.fixture
def erp(settings):
    simulator = ErpSimulator("127.0.0.1", 0, seed=7).start()
    settings.ERP_POSTING_ENABLED = True
    settings.ERP_BASE_URL = simulator.url
    settings.ERP_AUTH = "none"
    settings.ERP_TIMEOUT_S = 2
    settings.OUTBOX_ENQUEUE_ON_COMMIT = False
    yield simulator
    simulator.stop()


def _closed_october():
    c, project = contract()
    work(project, D(2026, 10, 5), "8")
    issue(c, D(2026, 10, 30), "300.00")
    revenue_close(period="2026-10", user=controller(), lock=True)
    return JournalEntry.objects.get(period__start=D(2026, 10, 1))


def test_closing_queues_the_journal_and_the_simulator_books_it_once(erp):
    journal = _closed_october()
    assert journal.erp_status == JournalEntry.ErpStatus.QUEUED
    message = OutboxMessage.objects.get(kind=OutboxMessage.Kind.POST_JOURNAL)
    assert message.payload["type"] == "journal" and message.payload["number"] == journal.reference
    assert sum(Decimal(line["debit"]) for line in message.payload["lines"]) == Decimal("800.00")
    assert sum(Decimal(line["credit"]) for line in message.payload["lines"]) == Decimal("800.00")

    assert outbox_deliver(message.pk) == "delivered"
    assert outbox_deliver(message.pk) == "skipped"
    journal.refresh_from_db()
    assert journal.erp_status == JournalEntry.ErpStatus.POSTED and journal.erp_id.startswith("JNL-")
    assert [d["kind"] for d in erp.documents()] == ["journal"]


class _NoJournals(ErpAdapter):
    def upsert_customer(self, document, *, idempotency_key):  # pragma: no cover - not called
        raise AssertionError

    post_invoice = post_credit_note = upsert_customer

    def invoice_status(self, *, idempotency_key="", number=""):
        return None


def test_an_adapter_without_journals_dead_letters_it_with_a_clear_reason(settings):
    settings.ERP_POSTING_ENABLED = True
    settings.OUTBOX_ENQUEUE_ON_COMMIT = False
    settings.ERP_ADAPTER = f"{__name__}._NoJournals"
    _closed_october()
    message = OutboxMessage.objects.get(kind=OutboxMessage.Kind.POST_JOURNAL)
    assert outbox_deliver(message.pk) == "dead"
    message.refresh_from_db()
    assert "does not accept journal entries" in message.last_error


def test_a_pm_proposes_an_estimate_and_a_controller_approves_it_through_the_engine():
    c, project = contract(fixed_fee=True)
    milestone(project, "10000.00")
    work(project, D(2026, 10, 5), "25")
    pm = project.project_manager
    estimate = estimate_propose(contract=c, hours=Decimal("100"), as_of=D(2026, 10, 1), user=pm, note="kick-off")
    assert estimate.status == Estimate.Status.PROPOSED
    request = ApprovalRequest.objects.get(object_id=estimate.pk)
    with pytest.raises(ApplicationError):  # nobody approves what they proposed
        approval_decide(request=request, user=pm, decision="approve")
    approval_decide(request=request, user=controller(), decision="approve", comment="agreed with the PM")
    estimate.refresh_from_db()
    assert estimate.status == Estimate.Status.APPROVED and estimate.decided_by is not None
    assert estimate.history.count() >= 2
    revenue_close(period="2026-10", user=controller(), lock=True)
    assert RevenueSchedule.objects.get(contract=c).cumulative_recognised == Decimal("2500.00")


def test_only_the_pm_or_finance_proposes_and_only_for_fixed_fee():
    c, _project = contract(fixed_fee=True)
    with pytest.raises(PermissionDeniedError):
        estimate_propose(contract=c, hours=Decimal("10"), as_of=D(2026, 10, 1), user=UserFactory(groups=["consultant"]))
    tm, _ = contract()
    with pytest.raises(ApplicationError, match="fixed-fee"):
        estimate_propose(contract=tm, hours=Decimal("10"), as_of=D(2026, 10, 1), user=controller())


def test_the_tryton_demo_books_the_journals_on_accounts_of_trytons_chart(settings):
    from billing.models import LegalEntity
    from integrations.erp.tryton import DEMO_REVENUE_ACCOUNTS
    from revenue.demo import _erp_accounts
    from revenue.models import EntityAccounts
    from tests.factories import LegalEntityFactory

    nwb = LegalEntityFactory(code="NWB")
    _erp_accounts()  # the simulator: Billable's default codes stay
    assert not EntityAccounts.objects.exists()
    settings.ERP_ADAPTER = "integrations.erp.tryton.TrytonErpAdapter"
    _erp_accounts()
    accounts = EntityAccounts.objects.get(entity=LegalEntity.objects.get(pk=nwb.pk))
    assert (accounts.revenue, accounts.wip, accounts.fx_revaluation) == (
        DEMO_REVENUE_ACCOUNTS["revenue"],
        DEMO_REVENUE_ACCOUNTS["wip"],
        DEMO_REVENUE_ACCOUNTS["fx_revaluation"],
    )
