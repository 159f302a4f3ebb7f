"""The benchmarks' signed-in sessions (bench/sessions.py) are sessions the portal accepts.

A load test whose sessions the portal did not recognise would measure the login redirect of
every page; here each role's session opens a page of its own, MFA passed where the role needs it.
"""

from __future__ import annotations

import pytest
from django.test import Client

from bench.sessions import signed_in_session_key
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("role", "page"),
    [
        ("finance_analyst", "/billing/exceptions/"),
        ("finance_controller", "/approvals/mine/"),
        ("collections", "/disputes/collections/aging/"),
    ],
)
def test_a_benchmark_session_opens_the_pages_of_its_role(role, page):
    user = UserFactory(groups=[role])
    client = Client()
    client.cookies["sessionid"] = signed_in_session_key(user)

    response = client.get(page)

    assert response.status_code == 200, response.get("Location")
    assert response.wsgi_request.user == user
