"""The same KPIs at /api/v1/kpis/ (scope read:kpis) and from `manage.py kpis --json`."""

from __future__ import annotations

import itertools
import json
from datetime import date
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from insights.selectors import METRICS
from integrations.services.clients import integration_client_create
from tests.factories import ClientFactory, ContractFactory, LegalEntityFactory
from tests.insights.kpis.factories import issued

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()
    yield
    cache.clear()


_names = itertools.count(1)


def _api(scopes):
    _client, token, _secret = integration_client_create(name=f"bi-{next(_names)}", scopes=scopes)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


@pytest.fixture
def history():
    contract = ContractFactory(entity=LegalEntityFactory(code="DE01"), client=ClientFactory(code="ACME"))
    for day in (2, 5, 11):
        issued(contract=contract, issue_date=date(2025, 4, day), period_end=date(2025, 3, 31))
    issued(contract=ContractFactory(), issue_date=date(2025, 4, 20), period_end=date(2025, 3, 31))


def test_api_serves_one_key_per_metric(history, django_assert_max_num_queries):
    api = _api(["read:kpis"])
    with django_assert_max_num_queries(45):
        response = api.get("/api/v1/kpis/", {"period_start": "2025-04-01", "period_end": "2025-04-30"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"filters", *METRICS}
    assert body["days_to_invoice"]["n"] == 4
    assert body["filters"]["period_start"] == "2025-04-01"


def test_api_filters_and_definitions(history):
    api = _api(["read:kpis"])
    body = api.get("/api/v1/kpis/", {"period_start": "2025-04-01", "period_end": "2025-04-30", "entity": "DE01",
                                     "metric": "days_to_invoice", "definitions": "true"}).json()
    assert set(body) == {"filters", "days_to_invoice", "definitions"}
    assert body["days_to_invoice"]["median"] == 5.0
    assert "issue date − end of the billed period" in body["definitions"]["days_to_invoice"]


def test_api_needs_the_scope_and_valid_dates(history):
    assert _api(["read:billing"]).get("/api/v1/kpis/", {"period_start": "2025-04-01",
                                                        "period_end": "2025-04-30"}).status_code == 403
    api = _api(["read:kpis"])
    response = api.get("/api/v1/kpis/", {"period_start": "2025-04-30", "period_end": "2025-04-01"})
    assert response.status_code == 400
    assert set(response.json()) >= {"code", "message", "field_errors"}
    assert "period_end" in response.json()["field_errors"]
    assert api.get("/api/v1/kpis/").status_code == 400
    assert APIClient().get("/api/v1/kpis/", {"period_start": "2025-04-01", "period_end": "2025-04-30"}
                           ).status_code == 401


def test_command_json_has_one_key_per_metric(history):
    out = StringIO()
    call_command("kpis", "--period-start", "2025-04-01", "--period-end", "2025-04-30", "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert set(body) == {"filters", *METRICS}
    assert body["days_to_invoice"]["n"] == 4

    out = StringIO()
    call_command("kpis", "--period-start", "2025-04-01", "--period-end", "2025-04-30", "--client", "ACME",
                 stdout=out)
    assert "Days to invoice [days_to_invoice]" in out.getvalue()
    assert "n=3 median=5.0" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("kpis", "--period-start", "2025-04-30", "--period-end", "2025-04-01")


def test_api_refuses_dates_out_of_range():
    api = _api(["read:kpis"])
    response = api.get("/api/v1/kpis/", {"period_start": "0001-01-01", "period_end": "0001-01-05"})
    assert response.status_code == 400
    assert "period_start" in response.json()["field_errors"]
