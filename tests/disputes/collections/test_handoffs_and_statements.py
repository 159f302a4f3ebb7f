"""Collections hand-offs (one open per invoice, FSM, history) and client statements (running balance, profile)."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.conf import settings
from django.urls import reverse
from django_fsm_log.models import StateLog

from disputes.models import CollectionsHandoff, CollectionsProfile
from disputes.selectors.collections import client_statement
from disputes.services.collections import collections_profile_update, handoff_close, handoff_create
from kernel.errors import ApplicationError, ConflictError, InvalidTransitionError, PermissionDeniedError
from tests.disputes.collections.factories import TODAY, credit_note, issued_invoice, payment
from tests.factories import LegalEntityFactory, UserFactory

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def collector():
    return UserFactory(groups=["collections"])


# --- hand-offs ------------------------------------------------------------------------------------------------


def test_hand_off_and_close_with_history_and_one_open_per_invoice(collector):
    invoice = issued_invoice(days_late=70)

    handoff = handoff_create(invoice=invoice, user=collector, reason="No reply to three reminders",
                             assignee="Inkasso Nord")

    assert (handoff.status, handoff.assignee, handoff.handed_off_by) == ("open", "Inkasso Nord", collector)
    first = handoff.history.get()
    assert (first.history_user, first.history_change_reason) == (collector, "Handed off: No reply to three reminders")
    with pytest.raises(ConflictError):
        handoff_create(invoice=invoice, user=collector, reason="Again")

    handoff = handoff_close(handoff=handoff, user=collector, note="Paid in full via agency")

    assert (handoff.status, handoff.closed_note) == ("closed", "Paid in full via agency")
    log = StateLog.objects.for_(handoff).get()
    assert (log.source_state, log.state, log.by, log.description) == ("open", "closed", collector,
                                                                      "Paid in full via agency")
    assert handoff.history.first().history_change_reason == "Closed: Paid in full via agency"
    with pytest.raises(InvalidTransitionError):
        handoff_close(handoff=handoff, user=collector, note="Twice")
    assert handoff_create(invoice=invoice, user=collector, reason="Defaulted on the plan").status == "open"


def test_hand_off_needs_collections_a_reason_and_an_open_receivable(collector):
    invoice = issued_invoice(days_late=70)
    with pytest.raises(PermissionDeniedError):
        handoff_create(invoice=invoice, user=UserFactory(groups=["auditor"]), reason="x")
    with pytest.raises(ApplicationError, match="reason is required"):
        handoff_create(invoice=invoice, user=collector, reason="  ")
    with pytest.raises(ApplicationError, match="only open receivables"):
        handoff_create(invoice=issued_invoice(days_late=70, status="paid"), user=collector, reason="x")
    with pytest.raises(ApplicationError, match="only open receivables"):
        handoff_create(invoice=issued_invoice(days_late=70, paid="1000.00", status="partially_paid"),
                       user=collector, reason="x")
    assert not CollectionsHandoff.objects.exists()


def test_hand_off_pages(client, collector, django_assert_max_num_queries):
    invoice = issued_invoice(days_late=70)
    client.force_login(collector)
    new_url = reverse("disputes:handoff_new", args=[invoice.pk])

    assert client.get(new_url).status_code == 200
    refused = client.post(new_url, {"reason": "", "assignee": "Legal"})
    assert refused.status_code == 200 and "A reason is required" in refused.content.decode()
    done = client.post(new_url, {"reason": "Ignored the final reminder", "assignee": "Legal"})
    assert done.status_code == 303 and done["Location"] == reverse("disputes:handoff_list")
    for _ in range(15):
        handoff_create(invoice=issued_invoice(days_late=95), user=collector, reason="Batch")

    with django_assert_max_num_queries(8):
        page = client.get(reverse("disputes:handoff_list"))
    assert len(page.context["handoffs"]) == 16 and invoice.number in page.content.decode()

    handoff = CollectionsHandoff.objects.get(invoice=invoice)
    client.post(reverse("disputes:handoff_close", args=[handoff.pk]), {"note": "Settled"})
    handoff.refresh_from_db()
    assert handoff.status == "closed"


# --- client statement ---------------------------------------------------------------------------------------


def test_statement_running_balance_per_currency_with_credit_notes_and_payments():
    first = issued_invoice(total="1000.00", days_late=40)  # issued 21 Apr 2026
    client, entity = first.client, first.entity
    second = issued_invoice(client=client, entity=entity, total="500.00", days_late=5)
    usd = issued_invoice(client=client, entity=entity, currency="USD", total="80.00", days_late=-5)
    credit_note(first, "100.00", on=datetime.date(2026, 6, 1))
    payment(invoice=first, amount="400.00", on=datetime.date(2026, 6, 10))
    payment(client=client, amount="50.00", on=datetime.date(2026, 6, 20))  # unapplied
    payment(client=client, amount="999.00", on=TODAY + datetime.timedelta(days=1))  # after the as-of date

    statement = client_statement(client=client, as_of=TODAY, since=datetime.date(2026, 1, 1))

    eur, us = statement.ledgers
    assert (eur.currency, us.currency) == ("EUR", "USD")
    assert [(e.kind, e.debit, e.credit, e.balance) for e in eur.entries] == [
        ("invoice", D("1000.00"), D("0"), D("1000.00")),
        ("invoice", D("500.00"), D("0"), D("1500.00")),
        ("credit_note", D("0"), D("100.00"), D("1400.00")),
        ("payment", D("0"), D("400.00"), D("1000.00")),
        ("payment", D("0"), D("50.00"), D("950.00")),
    ]
    assert eur.entries[-1].unapplied and eur.closing == D("950.00")
    assert (eur.open_items, eur.unapplied) == (D("1000.00"), D("50.00"))
    assert eur.closing == eur.open_items - eur.unapplied  # consistent with the aging
    assert (us.closing, us.open_items) == (D("80.00"), D("80.00"))
    assert [i.pk for i in statement.open_items] == [first.pk, second.pk, usd.pk]

    later = client_statement(client=client, as_of=TODAY, since=datetime.date(2026, 6, 5))
    assert later.ledgers[0].opening == D("1400.00") and later.ledgers[0].closing == D("950.00")


def test_statement_page_is_printable_and_bounded(client, django_assert_max_num_queries):
    first = issued_invoice(total="1000.00", days_late=40)
    for i in range(20):
        invoice = issued_invoice(client=first.client, entity=first.entity, total="10.00", days_late=i)
        payment(invoice=invoice, amount="1.00")
    client.force_login(UserFactory(groups=["auditor"]))
    url = reverse("disputes:client_statement", args=[first.client_id])

    with django_assert_max_num_queries(12):
        page = client.get(url, {"as_of": TODAY.isoformat()})

    html = page.content.decode()
    assert page.status_code == 200 and "css/collections.css" in html and first.number in html
    assert "@media print" in (settings.BASE_DIR / "static" / "css" / "collections.css").read_text()  # print styles
    assert "Save profile" not in html  # auditors change nothing
    assert client.get(reverse("disputes:client_statement", args=[999999])).status_code == 404


# --- collections profile -------------------------------------------------------------------------------------


def test_profile_update_is_validated_and_audited(collector):
    client = issued_invoice(days_late=1).client
    analyst = UserFactory(groups=["finance_analyst"])

    with pytest.raises(ApplicationError, match="Say what the payment plan is"):
        collections_profile_update(client=client, user=collector, in_payment_plan=True, payment_plan_note="")
    with pytest.raises(ApplicationError, match="increasing"):
        collections_profile_update(client=client, user=collector, in_payment_plan=False, dunning_offsets="21, 7")
    with pytest.raises(ApplicationError, match="not a number"):
        collections_profile_update(client=client, user=collector, in_payment_plan=False, dunning_offsets="7, x")
    with pytest.raises(PermissionDeniedError):
        collections_profile_update(client=client, user=UserFactory(groups=["auditor"]), in_payment_plan=False)

    profile = collections_profile_update(
        client=client, user=analyst, in_payment_plan=True, payment_plan_note="3 × 2,000 EUR from July",
        dunning_offsets="10; 30", reason="Agreed with the CFO",
    )

    assert (profile.in_payment_plan, profile.dunning_offsets) == (True, [10, 30])
    record = profile.history.get()
    assert (record.history_user, record.history_change_reason) == (analyst, "Agreed with the CFO")
    collections_profile_update(client=client, user=collector, in_payment_plan=False, dunning_offsets="")
    profile.refresh_from_db()
    assert (profile.in_payment_plan, profile.dunning_offsets) == (False, [])
    assert profile.history.first().history_change_reason == (
        "Payment plan ended; reminder offsets firm default; plan note cleared"
    )
    assert CollectionsProfile.objects.count() == 1


def test_profile_form_on_the_statement_page(client, collector):
    invoice = issued_invoice(days_late=1, entity=LegalEntityFactory())
    client.force_login(collector)
    url = reverse("disputes:collections_profile", args=[invoice.client_id])

    response = client.post(url, {"in_payment_plan": "on", "payment_plan_note": "Monthly", "dunning_offsets": "5"},
                           follow=True)

    assert "in a payment plan (no reminders); reminders at +5 days after due" in response.content.decode()
    assert invoice.client.collections_profile.in_payment_plan
    bad = client.post(url, {"dunning_offsets": "0"}, follow=True)
    assert "Reminder offsets must be" in bad.content.decode()
