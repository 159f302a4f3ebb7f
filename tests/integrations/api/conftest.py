"""Fixtures of the API tests: integration clients with real tokens, and a DRF test client that sends them."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from integrations.services.clients import integration_client_create


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_client(db):
    """make_client(name, scopes, **kw) → (IntegrationClient, token)."""

    def make(name: str = "psa", scopes: tuple[str, ...] = ("read:billing",), **kwargs):
        client, token, _secret = integration_client_create(name=name, scopes=list(scopes), **kwargs)
        return client, token

    return make


def bearer(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


@pytest.fixture
def reader(make_client):
    client, token = make_client("reader", ("read:billing",))
    return client, bearer(token)


@pytest.fixture
def writer(make_client):
    client, token = make_client("writer", ("read:billing", "write:billing"))
    return client, bearer(token)
