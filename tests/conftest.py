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
