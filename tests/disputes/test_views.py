"""Dispute screens: list (filters, counts, bounded queries), detail, open, resolve, notes, credit notes, reissue,
and the invoice page's dispute panel."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from billing.models import Invoice
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import invoice_approve
from disputes.models import Dispute
from disputes.services import dispute_open
from tests.disputes.factories import issued_invoice, lines_of

pytestmark = pytest.mark.django_db


def login(client, user):
    client.force_login(user)
    return client


def test_list_shows_overdue_first_with_counts_and_filters(client, analyst, collector):
    late = dispute_open(invoice=issued_invoice(), category="rate", disputed_amount=Decimal("10"), user=analyst)
    Dispute.objects.filter(pk=late.pk).update(due_date="2020-01-01")
    fresh = dispute_open(invoice=issued_invoice(), category="hours", disputed_amount=Decimal("20"), user=collector)
    response = login(client, collector).get(reverse("disputes:dispute_list"))
    assert response.status_code == 200
    rows = [row.dispute.pk for row in response.context["queue"].rows]
    assert rows == [late.pk, fresh.pk]
    assert response.context["queue"].overdue_count == 1
    html = response.content.decode()
    assert "Overdue" in html and "category-counts" in html
    only_hours = client.get(reverse("disputes:dispute_list"), {"category": "hours"})
    assert [r.dispute.pk for r in only_hours.context["queue"].rows] == [fresh.pk]
    mine = client.get(reverse("disputes:dispute_list"), {"owner": "me"})
    assert [r.dispute.pk for r in mine.context["queue"].rows] == [fresh.pk]
    overdue = client.get(reverse("disputes:dispute_list"), {"overdue": "1"})
    assert [r.dispute.pk for r in overdue.context["queue"].rows] == [late.pk]


def test_list_query_count_does_not_grow_with_rows(client, analyst, django_assert_max_num_queries):
    dispute_open(invoice=issued_invoice(), category="rate", disputed_amount=Decimal("10"), user=analyst)
    login(client, analyst)
    with django_assert_max_num_queries(12) as small:
        client.get(reverse("disputes:dispute_list"))
    for _ in range(3):
        dispute_open(invoice=issued_invoice(), category="tax", disputed_amount=Decimal("10"), user=analyst)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(reverse("disputes:dispute_list"))
    assert len(response.context["queue"].rows) == 4


def test_open_from_the_invoice_page_on_ticked_lines(client, analyst):
    invoice = issued_invoice()
    first, second = lines_of(invoice)[:2]
    login(client, analyst)
    page = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()
    assert reverse("disputes:dispute_open", args=[invoice.pk]) in page
    assert reverse("disputes:credit_note_new", args=[invoice.pk]) in page
    form = client.get(reverse("disputes:dispute_open", args=[invoice.pk]))
    assert form.status_code == 200
    response = client.post(reverse("disputes:dispute_open", args=[invoice.pk]), {
        "category": "hours", "customer_reference": "AP-1", f"line_{first.pk}": "on",
        f"amount_{first.pk}": str(first.amount), f"line_{second.pk}": "on", f"amount_{second.pk}": "50.00",
    })
    dispute = Dispute.objects.get(invoice=invoice)
    assert response.status_code == 302 and response.url == reverse("disputes:dispute_detail", args=[dispute.pk])
    assert dispute.disputed_amount == ((first.amount + Decimal("50.00")) * Decimal("1.19")).quantize(Decimal("0.01"))
    assert sorted(dispute.lines.values_list("amount", flat=True)) == sorted([first.amount, Decimal("50.00")])
    detail = client.get(response.url)
    assert detail.status_code == 200 and "AP-1" in detail.content.decode()
    again = client.post(reverse("disputes:dispute_open", args=[invoice.pk]), {"category": "rate"})
    assert again.status_code == 400 and "already has an open dispute" in again.content.decode()


def test_resolve_with_credit_and_reissue_through_the_page(client, analyst, controller):
    invoice = issued_invoice()
    first, second = lines_of(invoice)[:2]
    dispute = dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("100"), user=analyst,
                           lines=[(first, first.amount), (second, second.amount)])
    login(client, analyst)
    page = client.get(reverse("disputes:dispute_detail", args=[dispute.pk]))
    assert "resolve-form" in page.content.decode()
    response = client.post(reverse("disputes:dispute_resolve", args=[dispute.pk]), {
        "resolve-outcome": "credit_and_reissue", "resolve-note": "Wrong rate applied",
        f"resolve-line_{first.pk}": "on", f"resolve-line_{second.pk}": "on",
    })
    assert response.status_code == 302
    dispute.refresh_from_db()
    assert dispute.outcome == "credit_and_reissue" and dispute.credit_note.subtotal == first.amount + second.amount
    invoice_approve(invoice=dispute.credit_note, user=controller)
    panel = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()
    assert "reissue-now" in panel and Invoice.objects.get(pk=dispute.credit_note_id).number in panel
    response = client.post(reverse("disputes:invoice_reissue", args=[invoice.pk]))
    new = Invoice.objects.filter(contract=invoice.contract, kind="invoice").exclude(pk=invoice.pk).get()
    assert response.status_code == 302 and response.url == reverse("billing:invoice_detail", args=[new.pk])
    assert new.subtotal == first.amount + second.amount


def test_resolve_errors_are_shown_on_the_page(client, analyst):
    invoice = issued_invoice()
    dispute = dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("10"), user=analyst)
    response = login(client, analyst).post(reverse("disputes:dispute_resolve", args=[dispute.pk]), {
        "resolve-outcome": "credit_and_reissue", "resolve-note": "x", "resolve-credit_amount": "10",
    })
    assert response.status_code == 400 and "not an amount" in response.content.decode()


def test_notes_with_attachment_are_downloaded_through_the_portal(client, collector, auditor, analyst):
    dispute = dispute_open(invoice=issued_invoice(), category="quality", disputed_amount=Decimal("5"), user=analyst)
    login(client, collector)
    response = client.post(reverse("disputes:dispute_note", args=[dispute.pk]), {
        "text": "Call with AP", "attachment": SimpleUploadedFile("call.txt", b"minutes", "text/plain"),
    })
    assert response.status_code == 302
    note = dispute.notes.get()
    login(client, auditor)
    download = client.get(reverse("disputes:dispute_attachment", args=[note.pk]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"minutes"
    assert client.post(reverse("disputes:dispute_note", args=[dispute.pk]), {"text": "no"}).status_code == 403
    page = client.get(reverse("disputes:dispute_detail", args=[dispute.pk])).content.decode()
    assert "Call with AP" in page and "resolve-form" not in page and "Read only" in page


def test_credit_note_form_for_finance_only(client, analyst, collector):
    invoice = issued_invoice()
    login(client, collector)
    assert client.get(reverse("disputes:credit_note_new", args=[invoice.pk])).status_code == 403
    login(client, analyst)
    assert client.get(reverse("disputes:credit_note_new", args=[invoice.pk])).status_code == 200
    response = client.post(reverse("disputes:credit_note_new", args=[invoice.pk]),
                           {"mode": "amount", "amount": "119.00", "reason": "Goodwill"})
    note = Invoice.objects.get(credit_of=invoice)
    assert response.status_code == 302 and note.total == Decimal("119.00")
    too_much = client.post(reverse("disputes:credit_note_new", args=[invoice.pk]),
                           {"mode": "amount", "amount": str(invoice.total), "reason": "All"})
    assert too_much.status_code == 400 and "left to credit" in too_much.content.decode()
    client.post(reverse("disputes:credit_note_withdraw", args=[note.pk]), {"reason": "Typo"})
    note.refresh_from_db()
    assert note.status == "cancelled"


def test_invoice_panel_query_count_is_fixed(client, analyst, django_assert_max_num_queries):
    invoice = issued_invoice()
    login(client, analyst)
    url = reverse("billing:invoice_detail", args=[invoice.pk])
    with django_assert_max_num_queries(60) as before:
        client.get(url)
    dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("10"), user=analyst)
    for _ in range(3):
        credit_note_create(invoice=invoice, user=analyst, reason="x", amount=Decimal("1"))
    with django_assert_max_num_queries(len(before.captured_queries)):
        page = client.get(url).content.decode()
    assert "invoice-disputes" in page and "invoice-credit-notes" in page


def test_people_without_a_dispute_role_get_403(client):
    from tests.factories import UserFactory

    login(client, UserFactory(groups=["project_manager"]))
    assert client.get(reverse("disputes:dispute_list")).status_code == 403


def test_reassign_owner_and_due_date(client, analyst, collector):
    dispute = dispute_open(invoice=issued_invoice(), category="scope", disputed_amount=Decimal("5"), user=analyst)
    response = login(client, analyst).post(reverse("disputes:dispute_reassign", args=[dispute.pk]),
                                           {"owner": collector.pk, "due_date": "2030-01-31"})
    assert response.status_code == 302
    dispute.refresh_from_db()
    assert dispute.owner == collector and str(dispute.due_date) == "2030-01-31"
    assert dispute.history.first().history_user == analyst


def test_detail_query_count_does_not_grow_with_notes_and_lines(client, analyst, django_assert_max_num_queries):
    from disputes.services import dispute_add_note

    invoice = issued_invoice()
    dispute = open_two_lines(invoice, analyst)
    login(client, analyst)
    url = reverse("disputes:dispute_detail", args=[dispute.pk])
    with django_assert_max_num_queries(40) as before:
        client.get(url)
    for n in range(4):
        dispute_add_note(dispute=dispute, user=analyst, text=f"Call {n}")
    with django_assert_max_num_queries(len(before.captured_queries)):
        page = client.get(url).content.decode()
    assert "Call 3" in page


def open_two_lines(invoice, user):
    first, second = lines_of(invoice)[:2]
    return dispute_open(invoice=invoice, category="hours", disputed_amount=Decimal("10"), user=user,
                        lines=[(first, first.amount), (second, second.amount)])
