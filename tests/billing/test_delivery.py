"""Customer delivery (issue #7): posted invoices are e-mailed with their documents, every attempt logged.

Invoices are real (factory work → `run_billing` → `invoice_approve`). The e-mail
backend is Django's locmem outbox for successful sends, and the real SMTP backend
pointed at a closed local port for failures (a refused connection, not a mock).
"""

from __future__ import annotations

import socket

import pytest
from django.core import mail
from django.urls import reverse

from billing.models import DeliveryAttempt, Invoice, InvoiceDocument, InvoiceException
from billing.selectors import follow_up_queue
from billing.services.delivery import DELIVERY_FAILED, invoice_deliver
from billing.tasks import deliver_invoice_task
from kernel.errors import ApplicationError
from tests.billing.test_documents import bill_and_approve, book, time_contract
from tests.factories import ClientFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def analyst():
    return UserFactory(groups=["finance_analyst"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is: connecting is refused


@pytest.fixture
def smtp_down(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 2


def posted_invoice(analyst, *, emails="ap@client.example, controller@client.example", einvoice=False) -> Invoice:
    client = ClientFactory(billing_emails=emails, einvoice_by_email=einvoice)
    contract, consultant, _senior = time_contract(client=client, po_number="PO-7781")
    book(ProjectFactory(contract=contract), consultant, "8.00")
    return bill_and_approve(contract, analyst)


def test_posting_schedules_one_delivery_that_sends_the_pdf_and_marks_the_invoice_sent(
    analyst, django_capture_on_commit_callbacks, settings
):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    from django_q.conf import Conf

    previous, Conf.SYNC = Conf.SYNC, True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            invoice = posted_invoice(analyst)
    finally:
        Conf.SYNC = previous
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ap@client.example", "controller@client.example"]
    assert invoice.number in message.subject
    assert "PO-7781" in message.body and invoice.due_date.strftime("%d %B %Y") in message.body
    assert [name for name, _content, _type in message.attachments] == [f"{invoice.number}.pdf"]
    stored = InvoiceDocument.objects.get(invoice=invoice, kind="pdf")
    assert message.attachments[0][1] == bytes(stored.content)  # the issued bytes, not a re-render
    attempt = DeliveryAttempt.objects.get(invoice=invoice)
    assert attempt.result == "sent" and attempt.message_id == message.extra_headers["Message-ID"]
    assert invoice.history.filter(history_change_reason__startswith="Sent to").exists()

    # A retried task does not e-mail the customer twice.
    assert deliver_invoice_task(invoice.pk) == "already delivered"
    assert len(mail.outbox) == 1


def test_clients_wanting_e_invoices_get_the_validated_ubl_too(analyst):
    invoice = posted_invoice(analyst, einvoice=True)
    attempt = invoice_deliver(invoice=invoice)
    assert attempt.result == "sent"
    names = [name for name, _content, _type in mail.outbox[0].attachments]
    assert names == [f"{invoice.number}.pdf", f"{invoice.number}.xml"]
    assert b"urn:cen.eu:en16931:2017" in mail.outbox[0].attachments[1][1]


def test_a_failed_delivery_is_logged_queued_for_finance_and_a_resend_clears_it(analyst, smtp_down, settings):
    invoice = posted_invoice(analyst)
    attempt = invoice_deliver(invoice=invoice)
    invoice.refresh_from_db()
    assert attempt.result == "failed" and "ConnectionRefusedError" in attempt.error
    assert invoice.status == Invoice.Status.POSTED  # not sent
    finding = InvoiceException.objects.get(invoice=invoice, code=DELIVERY_FAILED, state="open")
    assert finding in follow_up_queue().rows

    invoice_deliver(invoice=invoice)  # still down: one open finding, two attempts
    assert InvoiceException.objects.filter(invoice=invoice, code=DELIVERY_FAILED).count() == 1
    assert DeliveryAttempt.objects.filter(invoice=invoice, result="failed").count() == 2

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    attempt = invoice_deliver(invoice=invoice, user=analyst, reason="Resent after the mail server came back")
    invoice.refresh_from_db()
    finding.refresh_from_db()
    assert attempt.result == "sent" and invoice.status == Invoice.Status.SENT
    assert finding.state == "resolved" and finding.resolved_by == analyst
    assert follow_up_queue().rows == []


def test_no_billing_address_is_a_failed_attempt_not_a_crash(analyst):
    invoice = posted_invoice(analyst)
    invoice.client.billing_emails = ""
    invoice.client.save()
    attempt = invoice_deliver(invoice=invoice)
    assert attempt.result == "failed" and "no billing e-mail address" in attempt.error
    assert mail.outbox == []
    assert InvoiceException.objects.filter(invoice=invoice, code=DELIVERY_FAILED, state="open").exists()


def test_drafts_are_never_sent(analyst):
    contract, consultant, _senior = time_contract()
    book(ProjectFactory(contract=contract), consultant, "8.00")
    from billing.services.billing_run import bill_period
    from tests.billing.test_documents import END, RUN_DATE, START

    bill_period(period_start=START, period_end=END, run_date=RUN_DATE, contracts=[contract.code])
    draft = Invoice.objects.get(contract=contract)
    with pytest.raises(ApplicationError, match="only posted invoices are sent"):
        invoice_deliver(invoice=draft)
    assert not DeliveryAttempt.objects.exists()


def test_resend_from_the_invoice_page(client, analyst):
    invoice = posted_invoice(analyst)
    client.force_login(analyst)
    page = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()
    assert "Send now to ap@client.example, controller@client.example" in page
    response = client.post(reverse("billing:invoice_resend", args=[invoice.pk]), {"reason": ""}, follow=True)
    assert f"{invoice.number} e-mailed to ap@client.example, controller@client.example." in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT
    page = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()
    assert "Resend to" in page and "Resent from the invoice page" in page


def test_auditors_see_the_delivery_log_but_cannot_resend(client, analyst):
    invoice = posted_invoice(analyst)
    invoice_deliver(invoice=invoice)
    auditor = UserFactory(groups=["auditor"])
    client.force_login(auditor)
    page = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()
    assert "Message-ID" in page and "Resend" not in page
    assert client.post(reverse("billing:invoice_resend", args=[invoice.pk])).status_code == 403


def test_exception_queue_lists_delivery_failures_after_issue(client, analyst, smtp_down):
    invoice = posted_invoice(analyst)
    invoice_deliver(invoice=invoice)
    client.force_login(analyst)
    page = client.get(reverse("billing:exception_queue")).content.decode()
    assert "After issue: delivery and cash" in page
    assert DELIVERY_FAILED in page and invoice.number in page
