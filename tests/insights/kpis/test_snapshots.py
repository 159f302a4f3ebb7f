"""KPI snapshots: the dashboards and /api/v1/kpis/ read figures identical to the live definitions.

Both paths run on the same data: the snapshot (stored, then read back) must equal `selectors.kpis`
exactly — values and types (Decimals, dates, tuples, non-string keys) — for the dashboards' metric
sets and for every metric; a snapshot older than its maximum age is recomputed; the pages say
when their figures were computed. (Test runs turn snapshots off by default; these tests set an age.)
"""

from __future__ import annotations

import datetime
from datetime import date
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from insights import selectors
from insights.models import KpiSnapshot
from insights.snapshots import (
    LEADERSHIP_METRICS,
    OPERATIONS_METRICS,
    decode,
    encode,
    kpis_snapshot,
    refresh_default_snapshots,
)
from insights.tasks import SNAPSHOT_FUNC, refresh_kpi_snapshots
from integrations.services.clients import integration_client_create
from tests.factories import ClientFactory, ContractFactory, InvoiceExceptionFactory, LegalEntityFactory, UserFactory
from tests.insights.kpis.factories import at, credit_note, decision, dispute, issued, pay

pytestmark = pytest.mark.django_db

START, END = date(2025, 1, 1), date(2025, 6, 30)


@pytest.fixture(autouse=True)
def snapshots_on(settings):
    settings.INSIGHTS_KPI_SNAPSHOT_MAX_AGE_S = 900
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def history():
    contract = ContractFactory(entity=LegalEntityFactory(code="DE01"), client=ClientFactory(code="ACME"))
    other = ContractFactory(currency="USD")
    for k in range(9):
        invoice = issued(
            contract=contract if k % 4 else other,
            issue_date=date(2025, 1 + k % 6, 3 + k),
            period_end=date(2025, 1 + k % 6, 1),
            total=f"{1000 + 37 * k}.50",
        )
        if k % 2:
            pay(invoice, "400.00", date(2025, 1 + k % 6, 20))
        InvoiceExceptionFactory(invoice=invoice, code="MISSING_RATE", state="resolved")
        if k % 3 == 0:
            dispute(invoice, category=("rate", "hours")[k % 2], opened=date(2025, 1 + k % 6, 25))
        if k % 4 == 1:
            credit_note(invoice, total="100.00", issue_date=date(2025, 2 + k % 5, 2))
        decision(invoice, opened=at(date(2025, 1 + k % 6, 2)), hours=5 + k * 3)


@pytest.mark.parametrize(
    "metrics", [LEADERSHIP_METRICS, OPERATIONS_METRICS, None], ids=["leadership", "operations", "all"]
)
def test_the_snapshot_equals_the_live_definitions(history, metrics):
    live = selectors.kpis(START, END, metrics=metrics, today=date(2025, 7, 15))
    first, first_at = kpis_snapshot(START, END, metrics=metrics, today=date(2025, 7, 15))  # computed and stored
    with CaptureQueriesContext(connection) as read:
        again, again_at = kpis_snapshot(START, END, metrics=metrics, today=date(2025, 7, 15))  # read back
    assert len(read.captured_queries) == 1
    assert first == live
    assert again == live
    assert repr(again) == repr(live)  # same types, same order (Decimal('1.50') is not 1.5)
    assert again_at == first_at
    assert KpiSnapshot.objects.count() == 1


def test_filters_make_their_own_snapshot(history):
    everyone, _ = kpis_snapshot(START, END, metrics=LEADERSHIP_METRICS)
    acme, _ = kpis_snapshot(START, END, metrics=LEADERSHIP_METRICS, client="ACME")
    assert acme == selectors.kpis(START, END, metrics=LEADERSHIP_METRICS, client="ACME")
    assert acme != everyone
    assert KpiSnapshot.objects.count() == 2


def test_a_stale_snapshot_is_recomputed(history, settings):
    _, computed_at = kpis_snapshot(START, END, metrics=OPERATIONS_METRICS)
    KpiSnapshot.objects.update(computed_at=computed_at - datetime.timedelta(seconds=901))
    issued(contract=ContractFactory(), issue_date=date(2025, 3, 3), period_end=date(2025, 2, 28), total="99.00")
    fresh, fresh_at = kpis_snapshot(START, END, metrics=OPERATIONS_METRICS)
    assert fresh_at > computed_at - datetime.timedelta(seconds=901)
    assert fresh == selectors.kpis(START, END, metrics=OPERATIONS_METRICS)


def test_the_scheduled_refresh_stores_what_the_pages_read_by_default(history):
    from django_q.models import Schedule

    assert Schedule.objects.filter(func=SNAPSHOT_FUNC, schedule_type="I").exists()
    done = refresh_kpi_snapshots()
    assert set(done) == {"leadership", "operations", "api"}
    assert KpiSnapshot.objects.count() == 3
    refresh_default_snapshots()
    assert KpiSnapshot.objects.count() == 3  # refreshed in place


def test_the_scheduled_refresh_computes_each_metric_once_for_all_the_default_sets(history, monkeypatch):
    from insights.params import default_period

    calls: list[str] = []
    for name, compute in list(selectors.METRICS.items()):
        monkeypatch.setitem(selectors.METRICS, name, lambda f, _n=name, _c=compute: calls.append(_n) or _c(f))

    refresh_default_snapshots()

    assert sorted(calls) == sorted(selectors.METRICS)  # the leadership and operations sets are not recomputed
    start, end = default_period()
    monkeypatch.undo()
    for metrics in (LEADERSHIP_METRICS, OPERATIONS_METRICS, None):
        assert kpis_snapshot(start, end, metrics=metrics)[0] == selectors.kpis(start, end, metrics=metrics)
    assert KpiSnapshot.objects.count() == 3


def test_the_api_answers_from_the_snapshot_with_its_time(history):
    _client, token, _secret = integration_client_create(name="bi-snap", scopes=["read:kpis"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    query = {"period_start": START.isoformat(), "period_end": END.isoformat()}
    first = api.get("/api/v1/kpis/", query)
    second = api.get("/api/v1/kpis/", query)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json() == selectors.jsonable(selectors.kpis(START, END))
    assert second["X-Kpis-Computed-At"] == first["X-Kpis-Computed-At"]


@pytest.mark.parametrize("page", ["/insights/", "/insights/operations/"])
def test_dashboards_show_when_their_figures_were_computed(client, history, page):
    client.force_login(UserFactory(groups=["finance_controller"]))
    response = client.get(page, {"period_start": START.isoformat(), "period_end": END.isoformat()})
    assert response.status_code == 200
    snapshot = KpiSnapshot.objects.get()
    assert b"data-kpi-freshness" in response.content
    assert timezone.localtime(snapshot.computed_at).strftime("%H:%M").encode() in response.content


def test_the_typed_encoding_keeps_every_value_as_it_was():
    value = {
        "d": Decimal("1.50"),
        "day": date(2025, 1, 2),
        "when": at(date(2025, 1, 2)),
        "t": (1, "a", None),
        "by_id": {3: [Decimal("0.1"), 2.5]},
        "by_pair": {("EUR", 1): "x"},
        "$odd": True,
        "nested": [{"k": (2,)}],
    }
    assert decode(encode(value)) == value
    assert repr(decode(encode(value))) == repr(value)
    with pytest.raises(TypeError):
        encode({"x": object()})
