"""Root fixtures. Tests run on PostgreSQL when DATABASE_URL points there (make test)."""
from __future__ import annotations

import pytest
from django.db import connection

# The browser fixtures (browser, e2e_settings, new_page, shoot): one Chromium per session for every directory.
pytest_plugins = ["tests.browser"]


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (row locks, concurrency); running on SQLite")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _force_login_passes_mfa():
    """`client.force_login(user)` of a user who must pass MFA also verifies the session with a real TOTP device.

    What a user who passed the real MFA flow (tests/controls/test_mfa.py) holds; see tests/login.py.
    """
    from django.test.client import ClientMixin

    from kernel.security import mfa_required
    from tests.login import mark_session_verified

    original = ClientMixin.force_login

    def force_login(self, user, backend=None):
        original(self, user, backend)
        if mfa_required(user):
            mark_session_verified(self, user)

    ClientMixin.force_login = force_login
    yield
    ClientMixin.force_login = original
