"""Dispute risk with payment behaviour, work notes and change-order churn (issue #21, ADR 0125).

The held-out test plants a signal the invoice's own features cannot see (friction in the work
notes, persistently late payers) and checks that the extended model beats the current one on
the same split; emptying `BEHAVIOUR_FEATURES` makes it fail (both models would be the same).
"""

from __future__ import annotations

import datetime
import random
from decimal import Decimal

import pytest
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.test import override_settings

from billing.models import ChangeOrder, Invoice, InvoiceLine, Payment
from insights.behaviour import (
    BEHAVIOUR_FEATURE_KEYS,
    churn,
    dunning_level,
    friction_score,
    load_change_orders,
    load_payment_behaviour,
)
from insights.features import EXTENDED_RISK_FEATURE_KEYS, RISK_FEATURE_KEYS
from insights.models import RiskModel
from insights.services.risk import train_risk_model
from insights.services.scoring import score_invoices
from tests.factories import ContractFactory, UserFactory
from tests.insights.assist.factories import issued_invoice
from tests.insights.kpis.factories import issued, pay

TODAY = datetime.date(2026, 1, 15)
FRICTION = "rework of the interface after the client's review; extra requests outside the SOW"
CALM = "build and test of the agreed release"


def test_friction_counts_themes_not_words():
    assert friction_score(CALM) == 0
    assert friction_score("Workshops as planned") == 0  # "planned" is not "unplanned"
    assert friction_score("Rework, and more rework") == 1
    assert friction_score(FRICTION) == 2
    assert friction_score("rework; out of scope; waiting on client; escalated; overtime") == 3


def test_dunning_levels_follow_days_overdue():
    assert [dunning_level(d) for d in (-5, 0, 1, 14, 15, 30, 31, 200)] == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.django_db
def test_payment_behaviour_only_counts_what_was_known_on_the_day():
    contract = ContractFactory()
    first = issued(
        contract=contract, total="8000.00", issue_date=datetime.date(2025, 1, 4), due_date=datetime.date(2025, 2, 3)
    )
    pay(first, "3000.00", datetime.date(2025, 3, 5))  # 30 days late, leaves a balance: partial
    pay(first, "5000.00", datetime.date(2025, 3, 15))  # 40 days late, settles it
    behaviour = load_payment_behaviour([contract.client_id])
    on = behaviour.features
    cid = contract.client_id
    # Before any payment: nothing known, but the invoice is 25 days overdue on 28 Feb: level 2.
    assert on(cid, datetime.date(2025, 2, 28)) == {
        "client_days_late": 0.0,
        "client_partial_rate": 0.0,
        "client_dunning_level": 2.0,
    }
    # After the first payment: one payment, 30 days late, partial; still open and 35 days overdue.
    assert on(cid, datetime.date(2025, 3, 10)) == {
        "client_days_late": 30.0,
        "client_partial_rate": 1.0,
        "client_dunning_level": 3.0,
    }
    # After both: average 35 days late, half of the payments partial, nothing open.
    assert on(cid, datetime.date(2025, 4, 1)) == {
        "client_days_late": 35.0,
        "client_partial_rate": 0.5,
        "client_dunning_level": 0.0,
    }


@pytest.mark.django_db
def test_change_order_churn_counts_the_last_180_days():
    contract = ContractFactory()
    for code, day in (
        ("CO-1", datetime.date(2024, 11, 10)),
        ("CO-2", datetime.date(2025, 6, 1)),
        ("CO-3", datetime.date(2025, 6, 20)),
    ):
        co = ChangeOrder.objects.create(contract=contract, code=code, description="scope change")
        ChangeOrder.objects.filter(pk=co.pk).update(
            created_at=datetime.datetime.combine(day, datetime.time(9), tzinfo=datetime.UTC)
        )
    orders = load_change_orders([contract.pk])
    assert churn(orders, contract.pk, datetime.date(2025, 6, 21)) == 2  # CO-1 is older than 180 days
    assert churn(orders, contract.pk, datetime.date(2025, 6, 20)) == 1  # CO-3 is not known yet
    assert churn(orders, contract.pk, datetime.date(2025, 8, 1)) == 2


def _planted_history(seed: int = 21) -> None:
    """Monthly invoices of 20 clients; disputes follow friction in the notes and late-paying clients only.

    Nothing the current features read differs between disputed and calm invoices: no exceptions,
    the same amounts, invoiced on the same day after period end.
    """
    rnd = random.Random(seed)
    owner = UserFactory(groups=["finance_analyst"])
    contracts = [ContractFactory() for _ in range(20)]
    late_payer = {c.pk: i % 2 == 0 for i, c in enumerate(contracts)}
    invoices, frictions = [], {}
    for month in range(12):
        year, mon = 2024 + (month + 1) // 12, (month + 1) % 12 + 1
        for contract in contracts:
            net = Decimal(8000)
            invoices.append(
                Invoice(
                    kind="invoice",
                    entity=contract.entity,
                    client=contract.client,
                    contract=contract,
                    currency="EUR",
                    issue_date=datetime.date(year, mon, 4),
                    due_date=datetime.date(year, mon, 4) + datetime.timedelta(30),
                    period_start=datetime.date(year, mon, 1) - datetime.timedelta(days=28),
                    period_end=datetime.date(year, mon, 1) - datetime.timedelta(days=1),
                    po_number=contract.po_number,
                    subtotal=net,
                    total=net,
                    status="draft",
                )
            )
    Invoice.objects.bulk_create(invoices)
    lines, payments, disputes = [], [], []
    from disputes.models import Dispute

    for invoice in invoices:
        friction = rnd.random() < 0.2
        frictions[invoice.pk] = friction
        text = f"Consulting: {FRICTION if friction else CALM}"
        lines.append(
            InvoiceLine(
                invoice=invoice,
                position=1,
                kind="time",
                quantity=80,
                unit_price=100,
                amount=invoice.subtotal,
                description=text,
            )
        )
        late = 35 if late_payer[invoice.contract_id] else 0
        paid_on = invoice.due_date + datetime.timedelta(days=late + rnd.randint(-3, 3))
        if paid_on < TODAY:
            payments.append(
                Payment(
                    client=invoice.client,
                    invoice=invoice,
                    amount=invoice.total,
                    currency="EUR",
                    date=paid_on,
                    external_reference=f"PLANTED-{invoice.pk}",
                )
            )
        p = 0.03 + 0.5 * friction + 0.2 * late_payer[invoice.contract_id]
        if rnd.random() < p:
            opened = datetime.datetime.combine(
                invoice.issue_date + datetime.timedelta(days=rnd.randint(5, 40)), datetime.time(9), tzinfo=datetime.UTC
            )
            disputes.append(
                Dispute(
                    invoice=invoice,
                    category="hours",
                    disputed_amount=Decimal("100.00"),
                    currency="EUR",
                    owner=owner,
                    opened_by=owner,
                    opened_at=opened,
                    due_date=opened.date(),
                    status="resolved",
                    outcome="upheld",
                )
            )
    InvoiceLine.objects.bulk_create(lines)
    Payment.objects.bulk_create(payments)
    Dispute.objects.bulk_create(disputes)
    Invoice.objects.filter(pk__in=[i.pk for i in invoices]).update(
        status="posted", number=Concat(Value("P-"), Cast("id", CharField()))
    )


@pytest.mark.django_db
@override_settings(INSIGHTS_RISK_MIN_SAMPLES=150, INSIGHTS_RISK_MIN_POSITIVES=15)
def test_with_notes_and_payment_behaviour_the_model_beats_the_current_one_on_the_same_split():
    assert BEHAVIOUR_FEATURE_KEYS, "the extended feature set is the point of this test"
    _planted_history()
    model = train_risk_model(today=TODAY)
    c = model.parameters["comparison"]
    assert model.samples == 240 and c["train"] == 180 and c["test"] == 60
    assert c["test_positives"] >= 8
    assert c["base_features"] == list(RISK_FEATURE_KEYS)
    assert set(c["added_features"]) == set(BEHAVIOUR_FEATURE_KEYS)
    # The current features see nothing of the planted signal; the extended ones do.
    assert c["extended_auc"] > c["base_auc"] + 0.15, c
    assert c["winner"] == "extended"
    assert model.is_active, model.note
    assert model.features == list(EXTENDED_RISK_FEATURE_KEYS)
    assert model.roc_auc == Decimal(str(c["extended_auc"]))
    coef = dict(zip(model.parameters["features"], model.parameters["coef"], strict=True))
    assert coef["notes_friction"] > 0 and coef["client_days_late"] > 0

    # A new draft whose notes speak of rework scores higher than a calm one, and says why.
    contract = Invoice.objects.filter(number__startswith="P-").first().contract
    calm = issued_invoice(contract, TODAY, status=Invoice.Status.PENDING_APPROVAL)
    rough = issued_invoice(contract, TODAY, status=Invoice.Status.PENDING_APPROVAL)
    InvoiceLine.objects.filter(invoice=rough).update(description=FRICTION)
    scores = score_invoices([calm, rough], flag=False)
    assert scores[calm.pk].risk_score < scores[rough.pk].risk_score
    top = {r["feature"]: r for r in scores[rough.pk].risk_reasons}
    assert top["notes_friction"]["value"] == 2 and top["notes_friction"]["contribution"] > 0
    assert len(scores[rough.pk].risk_reasons) == len(EXTENDED_RISK_FEATURE_KEYS)


@pytest.mark.django_db
@override_settings(INSIGHTS_RISK_MIN_SAMPLES=150, INSIGHTS_RISK_MIN_POSITIVES=15)
def test_the_model_page_and_the_command_report_both_aucs_on_the_same_split(client):
    from io import StringIO

    from django.core.management import call_command
    from django.urls import reverse

    _planted_history()
    out = StringIO()
    call_command("train_risk_model", "--today", TODAY.isoformat(), "--no-rescore", stdout=out)
    model = RiskModel.objects.get(is_active=True)
    c = model.parameters["comparison"]
    text = out.getvalue()
    assert f"AUC invoice-only {c['base_auc']}, with payment behaviour, notes and churn {c['extended_auc']}" in text
    assert "kept: extended" in text
    client.force_login(UserFactory(groups=["finance_controller"]))
    html = client.get(reverse("insights:model")).content.decode()
    table = html[html.index('id="feature-comparison"') :]
    table = table[: table.index("</table>")]
    assert f">{c['base_auc']}<" in table and f">{c['extended_auc']}<" in table
    assert "180 older invoices to train, newest 60 to test" in table
