"""Connections of the benchmarks to their own PostgreSQL databases, outside Django's connection."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def connect(settings: dict[str, Any], dbname: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A psycopg connection to `dbname` on the server of Django's `settings` (a DATABASES entry)."""
    return psycopg.connect(
        dbname=dbname,
        host=settings.get("HOST") or None,
        port=settings.get("PORT") or None,
        user=settings.get("USER") or None,
        password=settings.get("PASSWORD") or None,
        autocommit=autocommit,
    )


def admin(settings: dict[str, Any], *statements: sql.Composable | str) -> None:
    """Run statements that no transaction may hold (CREATE/DROP DATABASE, VACUUM) on the `postgres` database."""
    with connect(settings, "postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
