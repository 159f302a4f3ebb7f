"""Root fixtures. Tests run on PostgreSQL when DATABASE_URL points there (make test)."""
from __future__ import annotations

import pytest
from django.db import connection


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (row locks, concurrency); running on SQLite")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
