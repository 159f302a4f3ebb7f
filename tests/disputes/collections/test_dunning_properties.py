"""Invariant (hypothesis): dunning never reaches a disputed invoice or a client in a payment plan.

Over random portfolios — invoice states, balances, due dates, live disputes, payment plans,
per-client offsets, hand-offs — and a random sequence of run dates, every reminder sent went
to an open, undisputed, positive-balance invoice of a client not in a payment plan, at most one
per invoice and run, never the same level twice, and a re-run the same day sends nothing.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core import mail
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Invoice
from disputes.models import CollectionsHandoff, DunningNotice
from disputes.services.collections import dunning_run, handoff_create
from tests.disputes.collections.factories import TODAY, issued_invoice, live_dispute, payment_plan
from tests.factories import ClientFactory, LegalEntityFactory, UserFactory

pytestmark = pytest.mark.django_db

STATUSES = ["posted", "sent", "partially_paid", "disputed", "paid", "credited"]
OPEN = ("posted", "sent", "partially_paid", "disputed")

invoice_spec = st.fixed_dictionaries({
    "client": st.integers(0, 2),
    "status": st.sampled_from(STATUSES),
    "days_late": st.integers(-10, 120),
    "paid": st.sampled_from(["0", "400.00", "1000.00"]),
    "live_dispute": st.booleans(),
    "handed_off": st.booleans(),
})
client_spec = st.fixed_dictionaries({
    "plan": st.booleans(),
    "offsets": st.sampled_from([[], [5], [10, 40], [1, 2, 3, 60]]),
})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(
    clients=st.lists(client_spec, min_size=3, max_size=3),
    invoices=st.lists(invoice_spec, min_size=1, max_size=7),
    run_days=st.lists(st.integers(0, 60), min_size=1, max_size=4).map(sorted),
)
def test_dunning_never_reaches_a_disputed_invoice_or_a_payment_plan(db, settings, clients, invoices, run_days):
    settings.DUNNING_ATTACH_PDF = False
    mail.outbox = []
    with transaction.atomic():
        entity, collector = LegalEntityFactory(), UserFactory(groups=["collections"])
        made_clients = []
        for spec in clients:
            client = ClientFactory()
            payment_plan(client, on=spec["plan"], offsets=spec["offsets"])
            made_clients.append(client)
        made = []
        for spec in invoices:
            paid = Decimal(spec["paid"])
            invoice = issued_invoice(
                client=made_clients[spec["client"]], entity=entity, total="1000.00", days_late=spec["days_late"],
                status=spec["status"], paid=paid,
            )
            if spec["live_dispute"]:
                live_dispute(invoice)
            if spec["handed_off"] and spec["status"] in OPEN and paid < 1000:
                handoff_create(invoice=invoice, user=collector, reason="Agency")
            made.append(invoice)

        for day in run_days:
            today = TODAY + datetime.timedelta(days=day)
            before = DunningNotice.objects.filter(result="sent").count()
            summary = dunning_run(today=today)
            assert len({n.invoice_id for n in summary.notices}) == len(summary.notices)  # one per invoice per run
            for notice in summary.notices:
                invoice = Invoice.objects.get(pk=notice.invoice_id)
                client = made_clients[[c.pk for c in made_clients].index(invoice.client_id)]
                assert invoice.status in ("posted", "sent", "partially_paid")
                assert not invoice.disputes.filter(status__in=["open", "investigating"]).exists()
                assert not client.collections_profile.in_payment_plan
                assert not CollectionsHandoff.objects.filter(invoice=invoice, status="open").exists()
                assert invoice.balance > 0
                assert (today - invoice.due_date).days >= 1
            again = dunning_run(today=today)
            assert again.notices == []  # idempotent
            assert DunningNotice.objects.filter(result="sent").count() == before + summary.sent

        # Never the same level twice (the constraint backs it), and every e-mail has its record.
        levels = list(DunningNotice.objects.filter(result="sent").values_list("invoice_id", "level"))
        assert len(levels) == len(set(levels)) == len(mail.outbox)
        protected = {
            i.pk for i, spec in zip(made, invoices, strict=True)
            if spec["status"] == "disputed" or spec["live_dispute"] or clients[spec["client"]]["plan"]
        }
        assert not {invoice_id for invoice_id, _level in levels} & protected
        transaction.set_rollback(True)
