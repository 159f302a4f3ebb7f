"""Finding 8 of issue 12: oversized or malformed query parameters answer 400 with the error shape, never 500.

Before: `?owner=` with 30 digits on /disputes/, `?client=` on the aging page, `?person=` on /approvals/time/
(and `?run=` on the invoice list) ended in a 500 (the number overflowed the database's integers);
`?min_age=` with 19 digits overflowed a date on any database. Now `kernel.params` refuses such values
in one place (a middleware for every request, `int_param` for the integer parameters of the views).

The fuzz test takes every list page of the permissions matrix (GET, no object), learns which query
parameters the page reads (by recording the reads of a first request), and sends each of them
hostile values as a user of a role the page is for.
"""
from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils.datastructures import MultiValueDict

from kernel.params import MAX_ID
from portal import permissions_matrix as pm
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("param-validation")]

OVERSIZED = ["9" * 30]
HOSTILE = [*OVERSIZED, str(MAX_ID), "-1", "abc", "\x00"]
NOT_PARAMETERS = {"_probe"}


def _list_pages() -> list[tuple[str, str, str]]:
    """(pattern, url, role) for every GET row without an object that some role may open."""
    pages = []
    for rule in pm.MATRIX:
        if rule.method != "GET" or rule.target != "-" or rule.pattern == pm.ADMIN_CHECK:
            continue
        role = next((c for c in pm.COLUMNS if c != pm.ANONYMOUS and rule.outcome(c) == pm.Outcome.ALLOW), None)
        if role is None:
            continue
        try:
            url = reverse(rule.pattern)
        except NoReverseMatch:
            continue
        pages.append((rule.pattern, url, role))
    return pages


PAGES = _list_pages()


class _ReadRecorder:
    """Records the keys read from any QueryDict (request.GET, forms bound to it, filtersets) while active."""

    def __init__(self, monkeypatch):
        self.keys: set[str] = set()
        for name in ("get", "__getitem__", "getlist", "__contains__"):
            original = getattr(MultiValueDict, name)

            def recording(this, key, *args, _original=original, **kwargs):
                if isinstance(key, str):
                    self.keys.add(key)
                return _original(this, key, *args, **kwargs)

            monkeypatch.setattr(MultiValueDict, name, recording)


def _client_for(role: str) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(groups=[role], is_staff=role in pm.STAFF_ROLES))
    return client


def _assert_error_shape(response, name: str) -> None:
    body = json.loads(response.content)
    assert set(body) == {"code", "message", "field_errors"}
    assert body["code"] == "invalid_parameter"
    assert list(body["field_errors"]) == [name.replace("\x00", "")]


def test_the_matrix_has_list_pages():
    assert len(PAGES) >= 20
    assert {"disputes:dispute_list", "disputes:aging", "approvals:pm_time", "billing:invoice_list"} <= {
        p for p, _u, _r in PAGES
    }


@pytest.mark.parametrize(("pattern", "url", "role"), PAGES, ids=[p for p, _u, _r in PAGES])
def test_every_parameter_of_every_list_page_survives_hostile_values(pattern, url, role, monkeypatch):
    client = _client_for(role)
    with monkeypatch.context() as patch:
        recorder = _ReadRecorder(patch)
        first = client.get(url, {"_probe": "1"})
    assert first.status_code < 500, pattern
    names = sorted(recorder.keys - NOT_PARAMETERS)

    for name in names:
        for value in HOSTILE:
            response = client.get(url, {name: value}, HTTP_ACCEPT="application/json")
            assert response.status_code < 500, f"{pattern} ?{name}={value!r}: {response.status_code}"
            if value in OVERSIZED or "\x00" in value:
                assert response.status_code == 400, f"{pattern} ?{name}={value!r}: {response.status_code}"
            if response.status_code == 400:
                _assert_error_shape(response, name)


@pytest.mark.parametrize(
    ("url", "name", "role"),
    [("/disputes/", "owner", "finance_analyst"), ("/disputes/", "min_age", "finance_analyst"),
     ("/disputes/collections/aging/", "client", "collections"), ("/approvals/time/", "person", "project_manager"),
     ("/billing/invoices/", "run", "finance_analyst")],
)
def test_the_reported_parameters_answer_400_on_an_html_page(url, name, role):
    response = _client_for(role).get(url, {name: "9" * 30})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-error-code="invalid_parameter"' in html and f"<code>{name}</code>" in html


@pytest.mark.parametrize(("name", "value"), [("person", "abc"), ("person", "0"), ("person", str(MAX_ID + 1)),
                                             ("person", "-" + "9" * 30), ("person", "1.5"), ("person", "９")])
def test_the_integer_parser_names_the_parameter(name, value):
    response = _client_for("project_manager").get("/approvals/time/", {name: value}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    _assert_error_shape(response, name)


@pytest.mark.parametrize(
    "value", ["9" * 30, "-" + "9" * 30, "９" * 30, str(MAX_ID + 1), " 99999999999999999999 ", "a\x00"]
)
def test_the_guard_refuses_any_parameter_out_of_range(value):
    from django.http import QueryDict

    from kernel.params import BadQueryParameter, check_query

    query = QueryDict(mutable=True)
    query.setlist("anything", ["1", value])
    with pytest.raises(BadQueryParameter):
        check_query(query)
    check_query(QueryDict(f"anything={MAX_ID}&other=-{MAX_ID}&text=abc"))  # in range: no error


def test_a_nul_byte_in_a_parameter_name_is_refused():
    response = _client_for("finance_analyst").get("/disputes/?own%00er=1", HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    _assert_error_shape(response, "owner")


def test_api_filters_answer_400_with_the_error_shape():
    from integrations.services.clients import integration_client_create

    _client, token, _secret = integration_client_create(name="erp", scopes=["read:billing"])
    api = Client(raise_request_exception=False)
    for query in ({"client": "9" * 30}, {"invoice": "9" * 30}, {"status": "\x00"}):
        for path in ("/api/v1/invoices/", "/api/v1/payments/", "/api/v1/disputes/"):
            response = api.get(path, query, HTTP_AUTHORIZATION=f"Bearer {token}")
            assert response.status_code == 400, (path, query)
            _assert_error_shape(response, next(iter(query)))
