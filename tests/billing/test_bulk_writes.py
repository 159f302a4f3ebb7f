"""The billing run's bulk writes write what the ORM would (ADR 0110): COPY, log rows from the link, rates per span."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict
from django_fsm_log.models import StateLog
from simple_history.utils import bulk_create_with_history

from billing.models import InvoiceLine, TimeEntry
from billing.services.pricing import RateResolver
from billing.services.run_persistence import link_items
from insights.models import InvoiceScore
from kernel.bulk import copy_create, copy_create_with_history
from kernel.errors import ConflictError
from tests.factories import (
    BillingRunFactory,
    ContractFactory,
    ContractRateFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

STAMPS = {"id", "created_at", "updated_at", "history_id", "history_date", "scored_at"}


def _lines(invoice, tag: str) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice=invoice,
            position=n,
            kind=InvoiceLine.Kind.TIME,
            description=f"{tag} line {n}",
            quantity=Decimal("7.50"),
            unit_price=Decimal("120.0000"),
            amount=Decimal("900.00"),
            service_start=datetime.date(2025, 3, n),
            service_end=datetime.date(2025, 3, n + 10),
        )
        for n in range(1, 4)
    ]


def _rows(queryset, tag: str) -> list[dict]:
    return [
        {k: (v.replace(tag, "") if isinstance(v, str) else v) for k, v in row.items() if k not in STAMPS}
        for row in queryset.order_by("pk").values()
    ]


def test_copy_with_history_writes_the_rows_and_history_bulk_create_with_history_writes():
    invoice = InvoiceFactory()
    user = UserFactory()
    by_orm = bulk_create_with_history(
        _lines(invoice, "orm"), InvoiceLine, default_user=user, default_change_reason="Billing run 7"
    )
    by_copy = copy_create_with_history(
        _lines(invoice, "copy"), InvoiceLine, actor=user, reason="Billing run 7", batch_size=100
    )

    # Ids drawn from the table's sequence, in order, set on the objects.
    assert [line.pk for line in by_copy] == sorted(line.pk for line in by_copy)
    assert min(line.pk for line in by_copy) > max(line.pk for line in by_orm)
    assert InvoiceLine.objects.get(pk=by_copy[0].pk).description == "copy line 1"
    orm_rows = InvoiceLine.objects.filter(description__startswith="orm")
    copy_rows = InvoiceLine.objects.filter(description__startswith="copy")
    assert _rows(copy_rows, "copy") == _rows(orm_rows, "orm")
    history = InvoiceLine.history.model.objects
    orm_history = history.filter(description__startswith="orm")
    copy_history = history.filter(description__startswith="copy")
    assert _rows(copy_history, "copy") == _rows(orm_history, "orm")
    assert {h.history_user_id for h in copy_history} == {user.pk}
    assert {h.history_change_reason for h in copy_history} == {"Billing run 7"}
    assert [h.id for h in copy_history.order_by("history_id")] == [line.pk for line in by_copy]


def test_copy_writes_json_and_timestamps_as_bulk_create_does():
    first, second = InvoiceFactory(), InvoiceFactory()
    reasons = [{"feature": "total", "value": 1200.5, "median": 800, "z": 3.2}]
    by_orm = InvoiceScore.objects.bulk_create(
        [InvoiceScore(invoice=first, anomaly_score=Decimal("3.200"), anomaly_reasons=reasons, note="n")]
    )[0]
    by_copy = copy_create(
        [InvoiceScore(invoice=second, anomaly_score=Decimal("3.200"), anomaly_reasons=reasons, note="n")],
        InvoiceScore,
    )[0]
    by_orm.refresh_from_db()
    by_copy.refresh_from_db()
    assert by_copy.anomaly_reasons == by_orm.anomaly_reasons == reasons
    assert by_copy.risk_reasons == [] and by_copy.scored_at is not None
    assert {k: v for k, v in model_to_dict(by_copy).items() if k not in {"id", "invoice"}} == {
        k: v for k, v in model_to_dict(by_orm).items() if k not in {"id", "invoice"}
    }


def test_copy_that_breaks_a_constraint_raises_integrity_error_like_an_insert():
    invoice = InvoiceFactory()
    copy_create([InvoiceScore(invoice=invoice)], InvoiceScore)
    with pytest.raises(IntegrityError), transaction.atomic():
        copy_create([InvoiceScore(invoice=invoice)], InvoiceScore)
    assert InvoiceScore.objects.filter(invoice=invoice).count() == 1


def test_linking_writes_one_mark_invoiced_log_per_item_in_the_order_of_the_pairs():
    line = InvoiceLineFactory()
    entries = [TimeEntryFactory(status="approved") for _ in range(3)]
    run = BillingRunFactory()
    pairs = [(entries[2].pk, line.pk), (entries[0].pk, line.pk), (entries[1].pk, line.pk)]

    link_items(TimeEntry, pairs, None, run)

    logs = list(StateLog.objects.filter(transition="mark_invoiced").order_by("pk"))
    assert [log.object_id for log in logs] == [item_id for item_id, _ in pairs]
    for log in logs:
        assert (log.source_state, log.state, log.by_id) == ("approved", "invoiced", None)
        assert log.content_type.model_class() is TimeEntry
        assert log.description == f"Billed by run {run.pk} (invoice line {line.pk})"
    assert len({log.timestamp for log in logs}) == 1
    assert set(TimeEntry.objects.values_list("status", "invoice_line_id")) == {("invoiced", line.pk)}


def test_a_link_that_misses_an_item_rolls_back_its_log_rows_too():
    line = InvoiceLineFactory()
    billed, fresh = TimeEntryFactory(status="approved"), TimeEntryFactory(status="approved")
    link_items(TimeEntry, [(billed.pk, line.pk)], None, None)
    before = StateLog.objects.count()

    with pytest.raises(ConflictError), transaction.atomic():
        link_items(TimeEntry, [(fresh.pk, line.pk), (billed.pk, line.pk)], None, None)

    assert StateLog.objects.count() == before
    fresh.refresh_from_db()
    assert (fresh.status, fresh.invoice_line_id) == ("approved", None)


def test_the_rate_resolver_answers_every_day_as_that_day_s_own_resolution():
    """Spans between rate boundaries: rate card change, a role override for ten days, a person override."""
    role = RoleFactory(code="CONSULTANT")
    contract = ContractFactory()
    RateCardLineFactory(
        rate_card=contract.rate_card,
        role=role,
        rate=Decimal("100.00"),
        effective_from=datetime.date(2025, 1, 1),
        effective_to=datetime.date(2025, 3, 15),
    )
    RateCardLineFactory(
        rate_card=contract.rate_card, role=role, rate=Decimal("110.00"), effective_from=datetime.date(2025, 3, 16)
    )
    ContractRateFactory(
        contract=contract,
        role=role,
        rate=Decimal("130.00"),
        effective_from=datetime.date(2025, 3, 10),
        effective_to=datetime.date(2025, 3, 19),
    )
    overridden, other = PersonFactory(role=role), PersonFactory(role=role)
    ContractRateFactory(
        contract=contract,
        role=None,
        person=overridden,
        rate=Decimal("150.00"),
        effective_from=datetime.date(2025, 3, 25),
    )
    ProjectFactory(contract=contract)

    spans = RateResolver([contract])
    seen = set()
    for person in (overridden, other):
        for offset in range(75):
            day = datetime.date(2025, 2, 1) + datetime.timedelta(days=offset)
            expected = RateResolver([contract])._resolve(contract.id, person.id, role.id, day)
            answer = spans.resolve(contract_id=contract.id, person_id=person.id, role_id=role.id, day=day)
            assert answer == expected, (person, day)
            seen.add(answer.rate)
    assert seen == {Decimal("100.00"), Decimal("110.00"), Decimal("130.00"), Decimal("150.00")}
