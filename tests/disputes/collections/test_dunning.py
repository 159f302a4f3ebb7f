"""Dunning: levels at +N days after due, one reminder per invoice and run, recorded, idempotent, never disputed.

E-mails go through Django's locmem backend (`mail.outbox`); failures through the real SMTP
backend pointed at a closed local port (a refused connection, not a mock).
"""

from __future__ import annotations

import datetime
import importlib
import socket
from decimal import Decimal
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from billing.models import Invoice
from disputes.models import DunningNotice
from disputes.selectors.collections import dunning_due
from disputes.services.collections import dunning_run, handoff_create
from disputes.tasks import daily_dunning
from kernel.errors import PermissionDeniedError
from tests.disputes.collections.factories import TODAY, issued_invoice, live_dispute, payment, payment_plan
from tests.factories import ClientFactory, UserFactory

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture(autouse=True)
def _no_pdf(settings):
    settings.DUNNING_ATTACH_PDF = False  # one test below attaches the real PDF of a real invoice


@pytest.fixture
def collector():
    return UserFactory(groups=["collections"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sent(invoice: Invoice) -> list[tuple[int, str]]:
    return list(DunningNotice.objects.filter(invoice=invoice).order_by("level", "id").values_list("level", "result"))


def test_first_reminder_is_sent_at_seven_days_by_email_with_the_facts_and_recorded(collector):
    client = ClientFactory(billing_emails="ap@kunde.example, cfo@kunde.example")
    invoice = issued_invoice(client=client, total="1190.00", days_late=7)
    payment(invoice=invoice, amount="190.00")
    not_yet = issued_invoice(client=client, entity=invoice.entity, total="50.00", days_late=6)

    summary = dunning_run(today=TODAY, user=collector)

    assert (summary.sent, summary.failed) == (1, 0)
    (message,) = mail.outbox
    assert message.to == ["ap@kunde.example", "cfo@kunde.example"]
    assert message.subject == f"Reminder: invoice {invoice.number} from {invoice.entity.name} is overdue"
    assert invoice.number in message.body and "1,000.00 EUR" in message.body and "1,190.00 EUR" in message.body
    assert "was due on 23 June 2026" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and "<strong>1,000.00 EUR</strong>" in html
    (notice,) = DunningNotice.objects.filter(invoice=invoice)
    assert (notice.level, notice.result, notice.days_overdue, notice.balance) == (1, "sent", 7, D("1000.00"))
    assert notice.to == "ap@kunde.example, cfo@kunde.example" and notice.sent_by == collector
    assert notice.message_id == message.extra_headers["Message-ID"]
    assert sent(not_yet) == []


def test_running_twice_sends_nothing_new_and_the_next_level_comes_when_due():
    invoice = issued_invoice(days_late=7)

    assert dunning_run(today=TODAY).sent == 1
    assert dunning_run(today=TODAY).sent == 0
    assert dunning_run(today=TODAY + datetime.timedelta(days=13)).sent == 0  # 20 days late
    assert dunning_run(today=TODAY + datetime.timedelta(days=14)).sent == 1  # 21: level 2
    assert dunning_run(today=TODAY + datetime.timedelta(days=14)).sent == 0
    assert dunning_run(today=TODAY + datetime.timedelta(days=38)).sent == 1  # 45: level 3, the final one
    assert dunning_run(today=TODAY + datetime.timedelta(days=200)).sent == 0  # no level 4
    assert sent(invoice) == [(1, "sent"), (2, "sent"), (3, "sent")]
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["Reminder", "Second reminder", "Final reminder"]
    assert "despite our earlier reminders" in mail.outbox[-1].body and "final reminder" in mail.outbox[-1].body


def test_a_late_first_run_sends_the_highest_level_due_and_records_the_levels_it_passed_over():
    invoice = issued_invoice(days_late=50)

    summary = dunning_run(today=TODAY)

    assert summary.sent == 1 and len(mail.outbox) == 1
    assert mail.outbox[0].subject.startswith("Final reminder")
    assert "earlier reminders" not in mail.outbox[0].body  # none was sent: the text does not pretend
    assert sent(invoice) == [(1, "skipped"), (2, "skipped"), (3, "sent")]
    assert dunning_run(today=TODAY).sent == 0


def test_per_client_offsets_override_the_firm_default(settings):
    settings.DUNNING_DEFAULT_OFFSETS = [7, 21, 45]
    own = issued_invoice(days_late=10)
    payment_plan(own.client, on=False, offsets=[14, 28])
    default = issued_invoice(days_late=10)

    dunning_run(today=TODAY)
    assert (sent(own), sent(default)) == ([], [(1, "sent")])

    dunning_run(today=TODAY + datetime.timedelta(days=18))  # own: 28 days late → its level 2 (its last)
    assert sent(own) == [(1, "skipped"), (2, "sent")]
    subjects = {m.to[0]: m.subject.split(":")[0] for m in mail.outbox[1:]}
    assert subjects == {own.client.billing_email_list[0]: "Final reminder",  # its last level
                        default.client.billing_email_list[0]: "Second reminder"}


def test_the_default_offsets_come_from_settings(settings):
    settings.DUNNING_DEFAULT_OFFSETS = [3]
    invoice = issued_invoice(days_late=3)
    dunning_run(today=TODAY)
    assert sent(invoice) == [(1, "sent")]


def test_no_reminder_for_disputed_invoices_payment_plans_or_hand_offs_but_credit_hold_is_reminded(collector):
    disputed = issued_invoice(days_late=30, status="disputed")
    live = issued_invoice(days_late=30, status="sent")
    live_dispute(live)
    planned = issued_invoice(days_late=30)
    payment_plan(planned.client)
    handed = issued_invoice(days_late=30)
    handoff_create(invoice=handed, user=collector, reason="Agency", assignee="Inkasso")
    on_hold = issued_invoice(client=ClientFactory(credit_hold=True), days_late=30)
    paid = issued_invoice(days_late=30, status="paid")

    summary = dunning_run(today=TODAY)

    assert [n.invoice_id for n in summary.notices] == [on_hold.pk]
    assert summary.held_back == {"disputed": 2, "payment_plan": 1, "handed_off": 1}
    for invoice in (disputed, live, planned, handed, paid):
        assert sent(invoice) == []
    assert [m.to for m in mail.outbox] == [on_hold.client.billing_email_list]


def test_a_payment_plan_ending_lets_reminders_resume():
    invoice = issued_invoice(days_late=25)
    profile = payment_plan(invoice.client)
    assert dunning_run(today=TODAY).sent == 0
    profile.in_payment_plan = False
    profile.save()
    assert dunning_run(today=TODAY).sent == 1
    assert sent(invoice) == [(1, "skipped"), (2, "sent")]


def test_a_failed_send_is_recorded_and_retried_by_the_next_run(settings):
    invoice = issued_invoice(days_late=8)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 2

    summary = dunning_run(today=TODAY)

    assert (summary.sent, summary.failed) == (0, 1)
    (failed,) = DunningNotice.objects.filter(invoice=invoice)
    assert failed.result == "failed" and "Connection" in failed.error and failed.message_id == ""

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert dunning_run(today=TODAY).sent == 1
    assert sent(invoice) == [(1, "failed"), (1, "sent")]


def test_a_client_without_billing_address_is_a_failure_to_fix_not_a_silent_skip():
    invoice = issued_invoice(client=ClientFactory(billing_emails=""), days_late=8)
    summary = dunning_run(today=TODAY)
    assert summary.failed == 1 and mail.outbox == []
    assert DunningNotice.objects.get(invoice=invoice).error == (
        f"Client {invoice.client.code} has no billing e-mail address."
    )


def test_only_collections_send_reminders_by_hand():
    issued_invoice(days_late=8)
    with pytest.raises(PermissionDeniedError):
        dunning_run(today=TODAY, user=UserFactory(groups=["finance_analyst"]))
    assert mail.outbox == []


def test_dry_run_and_the_command_list_what_is_due_and_send_nothing():
    invoice = issued_invoice(days_late=22)
    out = StringIO()

    call_command("send_dunning", "--dry-run", "--today", TODAY.isoformat(), stdout=out)

    assert f"due level 2 {invoice.number}" in out.getvalue()
    assert "(dry run): 1 reminder(s) due" in out.getvalue()
    assert mail.outbox == [] and not DunningNotice.objects.exists()

    call_command("send_dunning", "--today", TODAY.isoformat(), stdout=out)
    assert "1 sent, 0 failed" in out.getvalue() and len(mail.outbox) == 1


def test_daily_schedule_migration_and_its_task_sends_what_is_due(time_machine):
    # Run the data migration's function itself: a transactional test's flush may have emptied the table.
    migration = importlib.import_module("disputes.migrations.0002_daily_dunning_schedule")
    Schedule.objects.filter(name="Daily dunning").delete()
    migration.schedule(django_apps, None)
    migration.schedule(django_apps, None)  # idempotent
    schedule = Schedule.objects.get(name="Daily dunning")
    assert schedule.next_run.hour == 6 and schedule.next_run > timezone.now()
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == ("disputes.tasks.daily_dunning", "D", -1)
    time_machine.move_to(datetime.datetime(2026, 6, 30, 6, 0, tzinfo=datetime.UTC))
    issued_invoice(days_late=7)
    assert daily_dunning() == "Dunning 2026-06-30: 1 sent, 0 failed."
    assert daily_dunning() == "Dunning 2026-06-30: 0 sent, 0 failed."


def test_dunning_due_rechecks_under_lock_an_invoice_disputed_after_planning(collector):
    invoice = issued_invoice(days_late=8)
    assert [i.invoice.pk for i in dunning_due(today=TODAY)] == [invoice.pk]
    Invoice.objects.filter(pk=invoice.pk).update(status="disputed")
    from disputes.services.collections import dunning_send

    assert dunning_send(invoice_id=invoice.pk, today=TODAY) is None
    assert mail.outbox == []


def test_the_reminder_carries_the_invoice_pdf(settings):
    from tests.billing.test_documents import bill_and_approve, book, time_contract
    from tests.factories import ProjectFactory

    settings.DUNNING_ATTACH_PDF = True
    contract, consultant, _senior = time_contract()
    book(ProjectFactory(contract=contract), consultant, "8.00")
    invoice = bill_and_approve(contract, UserFactory(groups=["finance_analyst"]))
    today = invoice.due_date + datetime.timedelta(days=7)

    assert dunning_run(today=today).sent == 1

    (message,) = [m for m in mail.outbox if m.subject.startswith("Reminder")]
    (name, content, mimetype), = message.attachments
    assert mimetype == "application/pdf" and content.startswith(b"%PDF") and invoice.number in name
    assert "A copy of the invoice is attached." in message.body


# --- the dunning page ---------------------------------------------------------------------------------------


def test_dunning_page_shows_due_upcoming_held_back_and_the_log_in_bounded_queries(
    client, collector, django_assert_max_num_queries, time_machine
):
    time_machine.move_to(datetime.datetime(2026, 6, 30, 9, 0, tzinfo=datetime.UTC))
    due = issued_invoice(days_late=7)
    soon = issued_invoice(days_late=3)
    held = issued_invoice(days_late=9, status="disputed")
    for i in range(30):
        issued_invoice(days_late=i)
    dunning_run(today=TODAY - datetime.timedelta(days=1))
    client.force_login(collector)

    with django_assert_max_num_queries(10):
        response = client.get(reverse("disputes:dunning"))

    overview = response.context["overview"]
    assert due.pk in [i.invoice.pk for i in overview.due_now]
    assert soon.pk in [i.invoice.pk for i in overview.upcoming]
    assert held.pk in [i.invoice.pk for i in overview.excluded]
    assert len(overview.notices) == DunningNotice.objects.count() > 0
    assert "Send now" in response.content.decode()


def test_send_now_is_for_collections(client, collector, time_machine):
    time_machine.move_to(datetime.datetime(2026, 6, 30, 9, 0, tzinfo=datetime.UTC))
    issued_invoice(days_late=7)
    client.force_login(UserFactory(groups=["finance_controller"]))
    assert client.post(reverse("disputes:dunning_send")).status_code == 403
    assert "Send now" not in client.get(reverse("disputes:dunning")).content.decode()

    client.force_login(collector)
    response = client.post(reverse("disputes:dunning_send"), follow=True)
    assert "1 sent, 0 failed" in response.content.decode()
    assert len(mail.outbox) == 1
