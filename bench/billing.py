"""Billing-run benchmark: the real run against a plain-SQL floor on the same data.

    python -m bench.billing [--scale-contracts 4000] [--entries 250000]

For each scale (full, then a quarter of it, to show how cost grows):

1. seed: `<db>` (DATABASE_URL) is dropped, created and migrated once; every scale
   clones it into `<db>_seed` and fills it with bulk SQL (`INSERT … SELECT
   generate_series`), then `VACUUM ANALYZE`;
2. run: `<db>_run` = `CREATE DATABASE … TEMPLATE <db>_seed`; `run_billing` over
   October 2026, timed with `perf_counter`, queries counted with an execute wrapper;
3. floor: `<db>_floor`, a fresh copy of the same seed; the same aggregation and
   linking in plain SQL: one invoice per contract, time lines by `GROUP BY
   project, role, rate` (rate from the rate card line), one line per expense and
   milestone, the compare-and-set linking `UPDATE`s, commit.

Prints a table and writes `bench/results/billing.json`. Only databases whose
name contains "bench" are ever dropped.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billable_bench")

import django

django.setup()

import psycopg  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from django.urls import NoReverseMatch, reverse  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.db import connect  # noqa: E402
from bench.procs import tree_cpu  # noqa: E402
from billing.models.contracts import TERMS_UNLOCK_SETTING  # noqa: E402

PERIOD_START = date(2026, 10, 1)
PERIOD_END = date(2026, 10, 31)
RUN_DATE = date(2026, 11, 2)
TS = "2026-11-01 00:00:00+00"
RESULTS = Path(__file__).resolve().parent / "results" / "billing.json"

# Valid VAT ids (python-stdnum accepts them), one per client country that has one.
VAT_IDS = {"DE": "DE123456796", "FR": "FR12345679385", "NL": "NL123456794B01", "GB": "GB123456825"}


# --------------------------------------------------------------------------- databases


class Databases:
    """The server of DATABASE_URL: admin statements on `postgres`, Django switched between copies."""

    def __init__(self) -> None:
        self.settings = connections["default"].settings_dict
        if self.settings["ENGINE"] != "django.db.backends.postgresql":
            sys.exit("bench.billing needs PostgreSQL: set DATABASE_URL=postgresql://…/billable_bench")
        self.base = self.settings["NAME"]
        if "bench" not in self.base:
            sys.exit(f"bench.billing drops and recreates its database: {self.base!r} must contain 'bench'.")
        self.seed, self.run, self.floor = f"{self.base}_seed", f"{self.base}_run", f"{self.base}_floor"

    def connect(self, dbname: str, *, autocommit: bool = False) -> psycopg.Connection:
        return connect(self.settings, dbname, autocommit=autocommit)

    def use(self, dbname: str) -> None:
        """Point Django's default connection at another database of the same server."""
        connections["default"].close()
        connections["default"].settings_dict["NAME"] = dbname
        ContentType.objects.clear_cache()

    def drop(self, dbname: str) -> None:
        assert "bench" in dbname
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))

    def create(self, dbname: str, template: str | None = None) -> None:
        self.drop(dbname)
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if template:
            # FILE_COPY: a file-level copy behind a checkpoint, not gigabytes of WAL that
            # the checkpointer would then flush during the measurement.
            statement += sql.SQL(" TEMPLATE {} STRATEGY = FILE_COPY").format(sql.Identifier(template))
        self._admin(statement)

    def checkpoint(self) -> None:
        """Flush dirty buffers, so that a measurement does not pay for the previous step's writes."""
        self._admin(sql.SQL("CHECKPOINT"))

    def _admin(self, statement: sql.Composable) -> None:
        # A template or a dropped database must have no session: retry briefly
        # (autovacuum or a closing connection of ours may still be there).
        for attempt in range(30):
            try:
                with self.connect("postgres", autocommit=True) as conn:
                    conn.execute(statement)
                return
            except psycopg.errors.ObjectInUse:
                if attempt == 29:
                    raise
                time.sleep(1)


# --------------------------------------------------------------------------- seed


def seed_statements(contracts: int, entries: int) -> list[tuple[str | sql.Composable, dict]]:
    """Bulk SQL that fills a migrated, empty database; deterministic (no random())."""
    c = max(10, contracts)
    p = {
        "ts": TS,
        "C": c,
        "K": max(3, c // 4),  # clients
        "P": max(10, c * 5 // 4),  # people
        "NT": c - c // 10,  # contracts that bill time (not fixed fee)
        "E": entries,
        "X": max(10, entries // 25),  # expenses
    }
    statements = [
        (
            """INSERT INTO billing_legalentity (id, created_at, updated_at, code, name, country, currency, vat_id,
                 address_line1, city, postal_code, invoice_prefix, bank_name, iban, bic)
               VALUES (1, %(ts)s, %(ts)s, 'DE01', 'Billable GmbH', 'DE', 'EUR', 'DE123456796', 'Hauptstr. 1',
                       'Berlin', '10115', '', '', '', ''),
                      (2, %(ts)s, %(ts)s, 'GB01', 'Billable Ltd', 'GB', 'GBP', 'GB123456825', '1 High St',
                       'London', 'EC1A 1AA', '', '', '', ''),
                      (3, %(ts)s, %(ts)s, 'US01', 'Billable Inc', 'US', 'USD', '', '1 Main St',
                       'Boston', '02108', '', '', '', '')""",
            p,
        ),
        # Clients: DE entity → DE, FR/NL (reverse charge), AT (no VAT id: not VAT-registered), CH (export);
        # GB entity → GB, DE/US (export); US entity → US. Some invalid VAT ids, credit holds, PO required.
        (
            """INSERT INTO billing_client (id, created_at, updated_at, source, external_id, code, legal_name,
                 address_line1, address_line2, city, postal_code, country, vat_id, currency, payment_terms_days,
                 po_required, billing_emails, credit_hold, erp_id, einvoice_by_email, not_vat_registered)
               SELECT s.i, %(ts)s, %(ts)s, '', '', 'CL' || lpad(s.i::text, 6, '0'), 'Client ' || s.i,
                      s.i || ' Market Street', '', 'Springfield', '10115', s.country,
                      CASE WHEN mod(s.i, 97) = 0 THEN 'DE000000000' ELSE coalesce(v.vat, '') END,
                      s.currency, 30, mod(s.i, 40) = 0, 'ap' || s.i || '@client.example', mod(s.i, 50) = 0, '',
                      false, s.country = 'AT'
               FROM (SELECT i,
                            CASE mod(i - 1, 3)
                              WHEN 0 THEN (ARRAY['DE','DE','DE','DE','DE','DE','FR','NL','AT','CH'])[mod(i / 3, 10) + 1]
                              WHEN 1 THEN (ARRAY['GB','GB','GB','GB','GB','GB','GB','GB','DE','US'])[mod(i / 3, 10) + 1]
                              ELSE 'US' END AS country,
                            (ARRAY['EUR','GBP','USD'])[mod(i - 1, 3) + 1] AS currency
                     FROM generate_series(1, %(K)s) AS i) AS s
               LEFT JOIN (VALUES ('DE', %(vat_de)s), ('FR', %(vat_fr)s), ('NL', %(vat_nl)s), ('GB', %(vat_gb)s))
                    AS v(country, vat) ON v.country = s.country""",
            {**p, "vat_de": VAT_IDS["DE"], "vat_fr": VAT_IDS["FR"], "vat_nl": VAT_IDS["NL"], "vat_gb": VAT_IDS["GB"]},
        ),
        (
            """INSERT INTO billing_role (id, code, name)
               SELECT r, 'ROLE' || r, 'Role ' || r FROM generate_series(1, 8) AS r""",
            p,
        ),
        (
            """INSERT INTO billing_person (id, created_at, updated_at, source, external_id, code, name, email, active,
                 home_entity_id, user_id, role_id)
               SELECT i, %(ts)s, %(ts)s, '', '', 'P' || lpad(i::text, 6, '0'), 'Person ' || i, '', true,
                      mod(i - 1, 3) + 1, NULL, mod(i - 1, 8) + 1
               FROM generate_series(1, %(P)s) AS i""",
            p,
        ),
        # Three rate cards per currency; the first of each gets a new rate from 16 October.
        (
            """INSERT INTO billing_ratecard (id, created_at, updated_at, code, name, currency)
               SELECT k, %(ts)s, %(ts)s, 'RC' || k, 'Rate card ' || k, (ARRAY['EUR','GBP','USD'])[(k - 1) / 3 + 1]
               FROM generate_series(1, 9) AS k""",
            p,
        ),
        (
            """INSERT INTO billing_ratecardline (rate, effective_from, effective_to, rate_card_id, role_id)
               SELECT 80 + r * 15 + k * 2, date '2025-01-01',
                      CASE WHEN mod(k, 3) = 1 THEN date '2026-10-15' END, k, r
               FROM generate_series(1, 9) AS k, generate_series(1, 8) AS r
               UNION ALL
               SELECT round((80 + r * 15 + k * 2) * 1.05, 2), date '2026-10-16', NULL, k, r
               FROM generate_series(1, 9) AS k, generate_series(1, 8) AS r WHERE mod(k, 3) = 1""",
            p,
        ),
        # Contracts: 80 % T&M, 10 % fixed fee (j ≡ 0 mod 10), 10 % retainers (j ≡ 5);
        # discounts, markups, caps (a few exceeded), missing POs, per-project invoicing.
        (
            """INSERT INTO billing_contract (id, created_at, updated_at, source, external_id, code, name,
                 billing_model, currency, cap, expense_markup_pct, discount_pct, po_number, payment_terms_days,
                 billing_frequency, invoice_per_project, retainer_amount, included_hours, sow_document,
                 sow_signed_on, status, client_id, entity_id, rate_card_id)
               SELECT s.j, %(ts)s, %(ts)s, '', '', 'C' || lpad(s.j::text, 6, '0'), 'Contract ' || s.j, s.model,
                      (ARRAY['EUR','GBP','USD'])[s.ent],
                      CASE WHEN mod(s.j, 45) = 4 THEN 5000 WHEN mod(s.j, 9) = 0 THEN 1000000 END,
                      CASE WHEN mod(s.j, 4) = 0 THEN 10 ELSE 0 END,
                      CASE WHEN mod(s.j, 6) = 0 THEN 5 ELSE 0 END,
                      CASE WHEN mod(s.j, 7) = 3 THEN '' ELSE 'PO-' || s.j END,
                      CASE WHEN mod(s.j, 5) = 0 THEN 14 END,
                      'monthly', s.model = 'time_and_materials' AND mod(s.j, 8) = 1,
                      CASE WHEN s.model = 'retainer' THEN 10000 END,
                      CASE WHEN s.model = 'retainer' THEN 40 END,
                      '', NULL, 'active', s.client, s.ent, (s.ent - 1) * 3 + mod(s.j, 3) + 1
               FROM (SELECT j, mod(j - 1, %(K)s) + 1 AS client, mod(mod(j - 1, %(K)s), 3) + 1 AS ent,
                            CASE mod(j, 10) WHEN 0 THEN 'fixed_fee' WHEN 5 THEN 'retainer'
                                 ELSE 'time_and_materials' END AS model
                     FROM generate_series(1, %(C)s) AS j) AS s""",
            p,
        ),
        # Two projects per contract; a few on hold (blocked) or completed.
        (
            """INSERT INTO billing_project (id, created_at, updated_at, source, external_id, code, name,
                 business_unit, status, contract_id, project_manager_id)
               SELECT q, %(ts)s, %(ts)s, '', '', 'PR' || lpad(q::text, 7, '0'), 'Project ' || q, 'Consulting',
                      CASE WHEN mod(q, 97) = 0 THEN 'on_hold' WHEN mod(q, 50) = 1 THEN 'completed' ELSE 'active' END,
                      (q + 1) / 2, NULL
               FROM generate_series(1, 2 * %(C)s) AS q""",
            p,
        ),
        # Contract overrides: a role rate on every 7th contract, a person rate from mid-period on every 11th.
        (
            """INSERT INTO billing_contractrate (rate, effective_from, effective_to, change_order_id, contract_id,
                 person_id, role_id)
               SELECT 150, date '2026-01-01', NULL::date, NULL::bigint, j, NULL::bigint, mod(j, 8) + 1
               FROM generate_series(1, %(C)s) AS j WHERE mod(j, 7) = 0
               UNION ALL
               SELECT 175, date '2026-10-10', NULL::date, NULL::bigint, j, mod(j * 37, %(P)s) + 1, NULL::bigint
               FROM generate_series(1, %(C)s) AS j WHERE mod(j, 11) = 0""",
            p,
        ),
        (
            """INSERT INTO billing_changeorder (created_at, updated_at, code, description, cap_delta,
                 signed_document, signed_on, status, submitted_at, decided_at, decision_reason, decided_by_id,
                 submitted_by_id, contract_id)
               SELECT %(ts)s::timestamptz, %(ts)s::timestamptz, 'CO-1', '', 50000, '', NULL::date, 'approved',
                      %(ts)s::timestamptz, %(ts)s::timestamptz, '', NULL::int, NULL::int, j
               FROM generate_series(1, %(C)s) AS j WHERE mod(j, 13) = 0
               UNION ALL
               SELECT %(ts)s::timestamptz, %(ts)s::timestamptz, 'CO-2', '', 0, '', NULL::date, 'submitted',
                      %(ts)s::timestamptz, NULL::timestamptz, '', NULL::int, NULL::int, j
               FROM generate_series(1, %(C)s) AS j WHERE mod(j, 101) = 0""",
            p,
        ),
        # Fixed-fee milestones: one approved and one planned per project.
        (
            """INSERT INTO billing_milestone (created_at, updated_at, source, external_id, name, amount, due_date,
                 evidence, status, completed_at, approved_at, approved_by_id, change_order_id, completed_by_id,
                 invoice_line_id, project_id)
               SELECT %(ts)s, %(ts)s, '', '', m.name, 12000 + q, date '2026-10-20', '', m.status,
                      CASE WHEN m.status = 'approved' THEN %(ts)s::timestamptz END,
                      CASE WHEN m.status = 'approved' THEN %(ts)s::timestamptz END, NULL, NULL, NULL, NULL, q
               FROM generate_series(1, 2 * %(C)s) AS q,
                    (VALUES ('Phase 1', 'approved'), ('Phase 2', 'planned')) AS m(name, status)
               WHERE mod((q + 1) / 2, 10) = 0""",
            p,
        ),
        (
            """INSERT INTO billing_fxrate (from_currency, to_currency, date, rate)
               SELECT f.c, t.c, d::date, round(f.v / t.v * (1 + mod(extract(day FROM d)::int, 5) * 0.001), 8)
               FROM (VALUES ('EUR', 1.08), ('GBP', 1.27), ('USD', 1.0), ('CHF', 1.12)) AS f(c, v),
                    (VALUES ('EUR', 1.08), ('GBP', 1.27), ('USD', 1.0), ('CHF', 1.12)) AS t(c, v),
                    generate_series(date '2026-09-01', date '2026-10-31', interval '1 day') AS d
               WHERE f.c <> t.c""",
            p,
        ),
    ]
    # Time: a September as large as October, billed by a previous run (history: realistic
    # statistics and previously invoiced amounts); then E approved billable entries in October
    # on T&M and retainer contracts, submitted (unapproved) and draft time, non-billable time
    # and late-approved September entries (T&M only) that this run catches up.
    for count, status, billable, month, days, offset, tm_only in (
        (p["E"], "approved", True, "2026-09-01", 30, 5000, False),
        (0, "history", False, "", 0, 0, False),
        (p["E"], "approved", True, "2026-10-01", 31, 0, False),
        (p["E"] // 25, "submitted", True, "2026-10-01", 31, 1000, False),
        (p["E"] // 100, "draft", True, "2026-10-01", 31, 2000, False),
        (p["E"] // 50, "approved", False, "2026-10-01", 31, 3000, False),
        (p["E"] // 100, "approved", True, "2026-09-01", 30, 4000, True),
    ):
        if status == "history":
            statements.append((HISTORY, {}))
            continue
        statements.append(
            (
                """INSERT INTO billing_timeentry (created_at, updated_at, source, external_id, date, description,
                     billable, status, submitted_at, approved_at, rejection_reason, hours, approved_by_id,
                     invoice_line_id, person_id, project_id)
                   SELECT %(ts)s, %(ts)s, '', '', g.day, '', %(billable)s::boolean, %(status)s::text, g.submitted,
                          CASE WHEN %(status)s::text = 'approved' THEN g.submitted + interval '1 hour' END,
                          '', g.hours, NULL, NULL, g.person, g.project
                   FROM (SELECT t.u, t.j, %(month)s::date + mod(t.u * 7 + t.j, %(days)s) AS day,
                                1 + mod(t.u * 11 + t.j, 29) * 0.25 AS hours,
                                mod(t.j * 37 + mod(t.u / 2, 5) * 1009, %(P)s) + 1 AS person,
                                2 * t.j - 1 + mod(t.u, 2) AS project,
                                CASE WHEN %(status)s::text = 'draft' THEN NULL
                                     WHEN mod(t.u * 3 + t.j, 211) = 0 THEN timestamptz '2026-11-05 09:00+00'
                                     ELSE (%(month)s::date + mod(t.u * 7 + t.j, %(days)s))::timestamp
                                          AT TIME ZONE 'UTC' + interval '1 day 18 hours' END AS submitted
                         FROM (SELECT (i - 1) / %(NT)s + %(offset)s AS u,
                                      mod(i - 1, %(NT)s) / 9 * 10 + mod(mod(i - 1, %(NT)s), 9) + 1 AS j
                               FROM generate_series(1, %(count)s) AS i) AS t
                         WHERE NOT %(tm_only)s::boolean OR mod(t.j, 10) <> 5) AS g""",
                {
                    **p,
                    "count": count,
                    "status": status,
                    "billable": billable,
                    "month": month,
                    "days": days,
                    "offset": offset,
                    "tm_only": tm_only,
                },
            )
        )
    # Expenses on every contract; every 7th in another currency, every 31st in CHF; some unapproved.
    for count, status in ((p["X"], "approved"), (p["X"] // 20, "submitted")):
        statements.append(
            (
                """INSERT INTO billing_expense (created_at, updated_at, source, external_id, date, description,
                     billable, status, submitted_at, approved_at, rejection_reason, category, amount, currency,
                     receipt, approved_by_id, invoice_line_id, person_id, project_id)
                   SELECT %(ts)s, %(ts)s, '', '', date '2026-10-01' + mod(g.i, 31), '', true, %(status)s::text,
                          %(ts)s::timestamptz, CASE WHEN %(status)s::text = 'approved' THEN %(ts)s::timestamptz END, '',
                          (ARRAY['travel','lodging','meals','software','other'])[mod(g.i, 5) + 1],
                          20 + mod(g.i * 37, 480) + 0.5,
                          CASE WHEN mod(g.i, 31) = 0 THEN 'CHF'
                               WHEN mod(g.i, 7) = 0 THEN (CASE c.currency WHEN 'EUR' THEN 'USD' ELSE 'EUR' END)
                               ELSE c.currency END,
                          '', NULL, NULL, mod(g.j * 37, %(P)s) + 1, 2 * g.j - 1 + mod(g.i / %(C)s, 2)
                   FROM (SELECT i, mod(i - 1, %(C)s) + 1 AS j FROM generate_series(1, %(count)s) AS i) AS g
                   JOIN billing_contract AS c ON c.id = g.j""",
                {**p, "count": count, "status": status},
            )
        )
    for name in ("legalentity", "client", "role", "person", "ratecard", "contract", "project"):
        table = f"billing_{name}"
        statements.append(
            (
                sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
                    sql.Literal(table), sql.Identifier(table)
                ),
                {},
            )
        )
    return statements


HISTORY = "bill the history"
HISTORY_INVOICES = """
    INSERT INTO billing_invoice (created_at, updated_at, kind, period_start, period_end, issue_date, due_date,
      currency, po_number, subtotal, tax_total, total, status, erp_id, notes, billing_run_id, client_id,
      contract_id, entity_id)
    SELECT now(), now(), 'invoice', %(start)s, %(end)s, %(run_date)s, %(run_date)s::date + 30, c.currency,
           c.po_number, 0, 0, 0, 'pending_approval', '', '', %(run)s, c.client_id, c.id, c.entity_id
    FROM billing_contract AS c
    WHERE c.billing_model IN ('time_and_materials', 'retainer') AND EXISTS (
      SELECT 1 FROM billing_timeentry AS te JOIN billing_project AS pr ON pr.id = te.project_id
      WHERE pr.contract_id = c.id AND te.status = 'approved' AND te.billable
        AND te.invoice_line_id IS NULL AND te.date <= %(end)s)"""
HISTORY_PERIOD = {"start": date(2026, 9, 1), "end": date(2026, 9, 30), "run_date": date(2026, 10, 2)}


def bill_history(conn: psycopg.Connection) -> None:
    """September, billed in plain SQL like the floor, numbered and sent."""
    params: dict = dict(HISTORY_PERIOD)
    with conn.cursor() as cur:
        cur.execute("ANALYZE")  # statistics of the rows just inserted, for sane plans
        params["run"] = cur.execute(FLOOR_STATEMENTS["run"], params).fetchone()[0]
        cur.execute(HISTORY_INVOICES, params)
        cur.execute(FLOOR_STATEMENTS["analyze_invoices"])
        cur.execute(FLOOR_STATEMENTS["time"], params)
        cur.execute(FLOOR_STATEMENTS["totals"], params)
        cur.execute(
            """UPDATE billing_invoice SET status = 'sent', number = 'H26-' || lpad(id::text, 7, '0'),
                 approved_at = %(run_date)s::timestamptz WHERE billing_run_id = %(run)s""",
            params,
        )
        cur.execute("UPDATE billing_billingrun SET status = 'done' WHERE id = %(run)s", params)


def seed(dbs: Databases, contracts: int, entries: int) -> float:
    """Fill `<db>_seed` (a copy of the migrated, empty `<db>`); returns the seconds it took."""
    started = time.perf_counter()
    dbs.create(dbs.seed, template=dbs.base)
    with dbs.connect(dbs.seed) as conn:
        # The seed writes signed contracts and their rates as they stand (like seed_demo): the live-contract
        # terms guard (ADR 0032) accepts them only inside this one transaction.
        conn.execute("SELECT set_config(%s, 'on', true)", [TERMS_UNLOCK_SETTING])
        for statement, params in seed_statements(contracts, entries):
            if statement is HISTORY:
                bill_history(conn)
            else:
                conn.execute(statement, params)
        conn.commit()
    with dbs.connect(dbs.seed, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


# --------------------------------------------------------------------------- run


# Parallel query off on both sides: each side's database work is then its one backend,
# whose CPU time we can read (on two shared cores, parallel workers buy nothing).
SESSION_SETUP = "SET max_parallel_workers_per_gather = 0"


def _backend_cpu(pid: int) -> float | None:
    """utime + stime of a (local) PostgreSQL backend, from /proc; None when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class CpuClock:
    """CPU seconds of this process plus those of its (local) PostgreSQL backends.

    Less disturbed than wall time by other work on a shared machine: the work both
    sides do, not how long they waited for a core. None when the server's processes
    cannot be read (another machine). The run bills chunks side by side on extra
    connections (threads): `QueryCounter` reports their backends (`backend_opened`,
    `backend_closing`), whose CPU is added.
    """

    def __init__(self, backend_pid: int) -> None:
        self.backend_pid = backend_pid
        self.started = (time.process_time(), _backend_cpu(backend_pid))
        self.others: dict[int, float | None] = {}  # pid → CPU when opened
        self.others_cpu = 0.0
        self.unreadable = False
        self.python_s: float | None = None  # this process (Django, the engine)
        self.postgres_s: float | None = None  # its backends

    def backend_opened(self, pid: int) -> None:
        self.others[pid] = _backend_cpu(pid)

    def backend_closing(self, pid: int) -> None:
        opened, now = self.others.pop(pid, None), _backend_cpu(pid)
        if opened is None or now is None:
            self.unreadable = True
        else:
            self.others_cpu += now - opened

    def stop(self) -> float | None:
        process, backend = time.process_time(), _backend_cpu(self.backend_pid)
        for pid in list(self.others):  # still open
            self.backend_closing(pid)
        if backend is None or self.started[1] is None or self.unreadable:
            return None
        self.python_s = round(process - self.started[0], 2)
        self.postgres_s = round(backend - self.started[1] + self.others_cpu, 2)
        return round(self.python_s + self.postgres_s, 2)


class QueryCounter:
    """Statements sent through Django, plus the COPYs the run makes on the raw psycopg cursor.

    Connections opened meanwhile (the run's threads) are counted too, get the same session
    settings, and report their backends to `cpu` so that their CPU counts.
    """

    def __init__(self) -> None:
        self.count = 0
        self.cpu: CpuClock | None = None
        self._lock = threading.Lock()

    def __call__(self, execute, sql_, params, many, context):
        with self._lock:
            self.count += 1
        return execute(sql_, params, many, context)

    @contextmanager
    def counting(self, connection):
        from django.db.backends.signals import connection_created

        original_copy = psycopg.Cursor.copy
        wrapper_class = type(connections["default"])  # the class behind the per-thread proxy
        original_close = wrapper_class.close

        def copy(cursor, *args, **kwargs):
            with self._lock:
                self.count += 1
            return original_copy(cursor, *args, **kwargs)

        def opened(sender, connection, **kwargs):
            connection.execute_wrappers.append(self)
            with connection.cursor() as cursor:
                cursor.execute(SESSION_SETUP)
                connection.bench_backend_pid = connection.connection.info.backend_pid
            if self.cpu is not None:
                self.cpu.backend_opened(connection.bench_backend_pid)

        def close(wrapper):
            pid = getattr(wrapper, "bench_backend_pid", None)
            if pid is not None and self.cpu is not None:
                self.cpu.backend_closing(pid)
                wrapper.bench_backend_pid = None
            return original_close(wrapper)

        psycopg.Cursor.copy = copy
        wrapper_class.close = close
        connection_created.connect(opened, dispatch_uid="bench-query-counter")
        try:
            with connection.execute_wrapper(self):
                yield self
        finally:
            connection_created.disconnect(dispatch_uid="bench-query-counter")
            wrapper_class.close = original_close
            psycopg.Cursor.copy = original_copy


def measure_run(dbs: Databases, profile: Path | None = None) -> dict:
    """`run_billing` over October 2026 on a fresh copy of the seed."""
    from django.db import connection

    from billing.models import Expense, Invoice, InvoiceLine, Milestone, TimeEntry
    from billing.services.billing_run import bill_period

    dbs.create(dbs.run, template=dbs.seed)
    dbs.checkpoint()
    dbs.use(dbs.run)
    connection.ensure_connection()
    # Warm what a long-lived worker has warm: the content-type cache and the URL resolver.
    ContentType.objects.get_for_model(Invoice)
    with suppress(NoReverseMatch):
        reverse("admin:index")
    with connection.cursor() as cursor:
        cursor.execute(SESSION_SETUP)
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    counter = QueryCounter()
    profiler = cProfile.Profile() if profile else None
    with counter.counting(connection):
        cpu = counter.cpu = CpuClock(backend)
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        run = bill_period(period_start=PERIOD_START, period_end=PERIOD_END, run_date=RUN_DATE)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        cpu_s = cpu.stop()
    if profiler:
        profiler.dump_stats(str(profile))
    result = {
        "entries": TimeEntry.objects.filter(invoice_line__invoice__billing_run=run).count(),
        "expenses": Expense.objects.filter(invoice_line__invoice__billing_run=run).count(),
        "milestones": Milestone.objects.filter(invoice_line__invoice__billing_run=run).count(),
        "invoices": Invoice.objects.filter(billing_run=run).count(),
        "lines": InvoiceLine.objects.filter(invoice__billing_run=run).count(),
        "run_s": round(elapsed, 3),
        "cpu_s": cpu_s,
        "python_cpu_s": cpu.python_s,
        "postgres_cpu_s": cpu.postgres_s,
        "queries": counter.count,
        "by_status": run.summary["by_status"],
    }
    dbs.use(dbs.base)
    connections["default"].close()
    return result


# --------------------------------------------------------------------------- across django-q2 workers

QCLUSTER = Path(__file__).resolve().parents[1] / "tests" / "integrations" / "outbox" / "qcluster_erp_only.py"


def _backends_cpu(conn: psycopg.Connection, dbname: str) -> dict[int, float]:
    """CPU of every backend on `dbname` but our own (the cluster's connections)."""
    pids = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [dbname]
    ).fetchall()
    return {pid: cpu for (pid,) in pids if (cpu := _backend_cpu(pid)) is not None}


def measure_workers(dbs: Databases, workers: int) -> dict:
    """The run as the finance page starts it: a django-q2 task, its chunks fanned out to `workers` workers.

    A `qcluster` (Redis, `Q_REDIS_URL`) on a fresh copy of the seed; the clock starts when the run is
    queued and stops when it has ended. CPU: the cluster's processes (Python) and the run database's
    backends (PostgreSQL), read from /proc; connections are kept for the whole run (`CONN_MAX_AGE`).
    """
    from django.conf import settings
    from django_q.tasks import async_task

    from billing.models import BillingRun, BillingRunChunk, Invoice, TimeEntry
    from billing.services.billing_run import billing_run_open

    if "redis" not in settings.Q_CLUSTER:
        sys.exit("bench.billing --workers needs Q_REDIS_URL (the workers share Redis and PostgreSQL)")
    dbs.create(dbs.run, template=dbs.seed)
    dbs.checkpoint()
    dbs.use(dbs.run)
    url = f"postgresql://{dbs.settings['USER']}@{dbs.settings['HOST'] or '127.0.0.1'}:{dbs.settings['PORT'] or 5432}"
    env = {
        **os.environ,
        "DATABASE_URL": f"{url}/{dbs.run}",
        "Q_WORKERS": str(workers),
        "Q_SCHEDULER": "false",
        "Q_POLL": "0.05",
        "CONN_MAX_AGE": "3600",
        "LOG_LEVEL": "WARNING",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the cluster's output, closed below
    cluster = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(QCLUSTER)], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        time.sleep(5)  # the sentinel forks its workers, which connect to Redis
        assert cluster.poll() is None, "the cluster stopped"
        with dbs.connect(dbs.run, autocommit=True) as admin:
            python_before, postgres_before = tree_cpu(cluster.pid), _backends_cpu(admin, dbs.run)
            load = os.getloadavg()[0]
            run = billing_run_open(period_start=PERIOD_START, period_end=PERIOD_END, run_date=RUN_DATE, user=None)
            started = time.perf_counter()
            async_task("billing.tasks.run_billing_task", run.pk, task_name=f"bench-run-{run.pk}")
            waits: dict[str, int] = {}  # what the cluster's busy backends wait on, sampled every 0.2 s
            while True:
                status = admin.execute("SELECT status FROM billing_billingrun WHERE id = %s", [run.pk]).fetchone()[0]
                if status in BillingRun.ENDED_STATUSES:
                    break
                for kind, event, query in admin.execute(
                    "SELECT wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity"
                    " WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()",
                    [dbs.run],
                ).fetchall():
                    key = f"{kind or 'CPU'}:{event or '-'}" + (f" {query}" if kind == "Lock" else "")
                    waits[key] = waits.get(key, 0) + 1
                for (blocker,) in admin.execute(
                    "SELECT (SELECT string_agg(DISTINCT l.mode, ', ')"
                    " FROM pg_locks l WHERE l.pid = b.pid AND l.relation = 'billing_billingrun'::regclass)"
                    " || ' | ' || left(b.query, 80) || ' | ' || b.state FROM pg_stat_activity a"
                    " JOIN pg_stat_activity b ON b.pid = (pg_blocking_pids(a.pid))[1]"
                    " WHERE a.datname = %s AND a.wait_event_type = 'Lock'",
                    [dbs.run],
                ).fetchall():
                    waits[f"blocked by: {blocker}"] = waits.get(f"blocked by: {blocker}", 0) + 1
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            queued_at = admin.execute("SELECT created_at FROM billing_billingrun WHERE id = %s", [run.pk]).fetchone()[0]
            python_cpu = tree_cpu(cluster.pid) - python_before
            postgres_cpu = sum(
                cpu - postgres_before.get(pid, 0.0) for pid, cpu in _backends_cpu(admin, dbs.run).items()
            )
        run.refresh_from_db()
        assert run.status == BillingRun.Status.DONE, run.error
        result = {
            "workers": workers,
            "run_s": round(elapsed, 3),
            "python_cpu_s": round(python_cpu, 2),
            "postgres_cpu_s": round(postgres_cpu, 2),
            "chunks": BillingRunChunk.objects.filter(run=run).count(),
            # When each chunk committed, seconds after the run was queued: chunks side by side commit in pairs.
            "chunks_done_after_s": [
                round((done - queued_at).total_seconds(), 1)
                for done in run.chunks.order_by("done_at").values_list("done_at", flat=True)
            ],
            "taken_after_s": round((run.started_at - queued_at).total_seconds(), 1),
            "backend_samples": dict(sorted(waits.items(), key=lambda kv: -kv[1])[:10]),
            "entries": TimeEntry.objects.filter(invoice_line__invoice__billing_run=run).count(),
            "invoices": Invoice.objects.filter(billing_run=run).count(),
            "load_before": round(load, 2),
        }
    except BaseException:
        log.seek(0)
        print(log.read().decode(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)  # the run has ended: what its workers still hold is no work
        try:
            cluster.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait(20)
        log.close()
        dbs.use(dbs.base)
        connections["default"].close()
    return result


def bench_workers(dbs: Databases, contracts: int, entries: int, workers: list[int], repeat: int) -> dict:
    """Seed once; then for each worker count, `repeat` runs on fresh copies; the fastest counts."""
    seed_s = seed(dbs, contracts, entries)
    out: dict = {"contracts": contracts, "entries_seeded": entries, "seed_s": round(seed_s, 1)}
    for n in workers:
        samples = [measure_workers(dbs, n) for _ in range(repeat)]
        best = min(samples, key=lambda r: r["run_s"])
        best["run_samples_s"] = [r["run_s"] for r in samples]
        out[f"{n}_workers"] = best
        print(
            f"  {n} worker(s): run {best['run_samples_s']} s, CPU Python {best['python_cpu_s']} s, "
            f"PostgreSQL {best['postgres_cpu_s']} s, {best['chunks']} chunks",
            flush=True,
        )
    return out


# --------------------------------------------------------------------------- floor

# The time statement: eligible time as the run reads it (docs/rules/billing.md: approved, billable,
# not linked, dated up to the period end; fixed-fee contracts bill no time; retainers
# only time in the period), priced from the contract's rate card line effective on the
# entry's date; lines by GROUP BY (invoice, project, role, rate); then the linking
# compare-and-set UPDATE of every entry to its line. One statement, one pass over the entries.
FLOOR_STATEMENTS = {
    "run": """INSERT INTO billing_billingrun (created_at, updated_at, period_start, period_end, run_date,
                contract_codes, status, contracts_total, contracts_done, summary, error)
              VALUES (now(), now(), %(start)s, %(end)s, %(run_date)s, '[]', 'running', 0, 0, '{}', '')
              RETURNING id""",
    "invoices": """
        INSERT INTO billing_invoice (created_at, updated_at, kind, period_start, period_end, issue_date, due_date,
          currency, po_number, subtotal, tax_total, total, status, erp_id, notes, billing_run_id, client_id,
          contract_id, entity_id)
        SELECT now(), now(), 'invoice', %(start)s, %(end)s, %(run_date)s,
               %(run_date)s::date + coalesce(c.payment_terms_days, cl.payment_terms_days), c.currency, c.po_number,
               0, 0, 0, 'pending_approval', '', '', %(run)s, c.client_id, c.id, c.entity_id
        FROM billing_contract AS c JOIN billing_client AS cl ON cl.id = c.client_id
        WHERE (c.billing_model IN ('time_and_materials', 'retainer') AND EXISTS (
                 SELECT 1 FROM billing_timeentry AS te JOIN billing_project AS pr ON pr.id = te.project_id
                 WHERE pr.contract_id = c.id AND te.status = 'approved' AND te.billable
                   AND te.invoice_line_id IS NULL AND te.date <= %(end)s))
           OR EXISTS (
                 SELECT 1 FROM billing_expense AS e JOIN billing_project AS pr ON pr.id = e.project_id
                 WHERE pr.contract_id = c.id AND e.status = 'approved' AND e.billable
                   AND e.invoice_line_id IS NULL AND e.date <= %(end)s)
           OR (c.billing_model = 'fixed_fee' AND EXISTS (
                 SELECT 1 FROM billing_milestone AS m JOIN billing_project AS pr ON pr.id = m.project_id
                 WHERE pr.contract_id = c.id AND m.status = 'approved' AND m.invoice_line_id IS NULL))""",
    # The new invoices' statistics, so the joins below are planned for their real number.
    "analyze_invoices": "ANALYZE billing_invoice",
    "time": """
        WITH priced AS MATERIALIZED (
          SELECT te.id, inv.id AS invoice_id, te.project_id, pe.role_id, rcl.id AS rate_id, rcl.rate, te.hours
          FROM billing_timeentry AS te
          JOIN billing_project AS pr ON pr.id = te.project_id
          JOIN billing_contract AS c ON c.id = pr.contract_id
          JOIN billing_person AS pe ON pe.id = te.person_id
          JOIN billing_ratecardline AS rcl
            ON rcl.rate_card_id = c.rate_card_id AND rcl.role_id = pe.role_id
           AND rcl.effective_from <= te.date AND (rcl.effective_to IS NULL OR rcl.effective_to >= te.date)
          JOIN billing_invoice AS inv ON inv.contract_id = c.id AND inv.billing_run_id = %(run)s
          WHERE te.status = 'approved' AND te.billable AND te.invoice_line_id IS NULL AND te.date <= %(end)s
            AND (c.billing_model = 'time_and_materials' OR (c.billing_model = 'retainer' AND te.date >= %(start)s))
        ), lines AS (
          INSERT INTO billing_invoiceline (invoice_id, position, kind, description, quantity, unit_price, amount,
            rate_source, rate_source_id, rate_source_label, project_id, role_id)
          SELECT invoice_id, 0, 'time', '', sum(hours), rate, round(sum(hours) * rate, 2), 'rate_card', rate_id, '',
                 project_id, role_id
          FROM priced GROUP BY invoice_id, project_id, role_id, rate_id, rate
          RETURNING id, invoice_id, project_id, role_id, rate_source_id
        )
        UPDATE billing_timeentry AS item SET invoice_line_id = lines.id, status = 'invoiced'
        FROM priced JOIN lines
          ON lines.invoice_id = priced.invoice_id AND lines.project_id = priced.project_id
         AND lines.role_id = priced.role_id AND lines.rate_source_id = priced.rate_id
        WHERE item.id = priced.id AND item.invoice_line_id IS NULL AND item.status = 'approved'""",
    # One line per expense, converted at the latest FX rate on or before its date, marked up.
    "expenses": """
        WITH lines AS (
          INSERT INTO billing_invoiceline (invoice_id, position, kind, description, quantity, unit_price, amount,
            rate_source, rate_source_id, rate_source_label, project_id, role_id)
          SELECT inv.id, 0, 'expense', e.category, 1, x.amount, x.amount, '', e.id, '', e.project_id, NULL
          FROM billing_expense AS e
          JOIN billing_project AS pr ON pr.id = e.project_id
          JOIN billing_contract AS c ON c.id = pr.contract_id
          JOIN billing_invoice AS inv ON inv.contract_id = c.id AND inv.billing_run_id = %(run)s
          LEFT JOIN LATERAL (
            SELECT fx.rate FROM billing_fxrate AS fx
            WHERE fx.from_currency = e.currency AND fx.to_currency = c.currency AND fx.date <= e.date
            ORDER BY fx.date DESC LIMIT 1) AS r ON true
          CROSS JOIN LATERAL (
            SELECT round(round(e.amount * CASE WHEN e.currency = c.currency THEN 1 ELSE r.rate END, 2)
                         * (1 + c.expense_markup_pct / 100), 2) AS amount) AS x
          WHERE e.status = 'approved' AND e.billable AND e.invoice_line_id IS NULL AND e.date <= %(end)s
          RETURNING id, rate_source_id)
        UPDATE billing_expense AS item SET invoice_line_id = lines.id, status = 'invoiced'
        FROM lines WHERE item.id = lines.rate_source_id AND item.invoice_line_id IS NULL AND item.status = 'approved'
        """,
    "milestones": """
        WITH lines AS (
          INSERT INTO billing_invoiceline (invoice_id, position, kind, description, quantity, unit_price, amount,
            rate_source, rate_source_id, rate_source_label, project_id, role_id)
          SELECT inv.id, 0, 'milestone', m.name, 1, m.amount, m.amount, '', m.id, '', m.project_id, NULL
          FROM billing_milestone AS m
          JOIN billing_project AS pr ON pr.id = m.project_id
          JOIN billing_contract AS c ON c.id = pr.contract_id AND c.billing_model = 'fixed_fee'
          JOIN billing_invoice AS inv ON inv.contract_id = c.id AND inv.billing_run_id = %(run)s
          WHERE m.status = 'approved' AND m.invoice_line_id IS NULL
          RETURNING id, rate_source_id)
        UPDATE billing_milestone AS item SET invoice_line_id = lines.id, status = 'invoiced'
        FROM lines WHERE item.id = lines.rate_source_id AND item.invoice_line_id IS NULL AND item.status = 'approved'
        """,
    "totals": """
        UPDATE billing_invoice AS inv SET subtotal = s.amount, total = s.amount
        FROM (SELECT invoice_id, sum(amount) AS amount FROM billing_invoiceline GROUP BY invoice_id) AS s
        WHERE inv.id = s.invoice_id AND inv.billing_run_id = %(run)s""",
}


def measure_floor(dbs: Databases) -> dict:
    """The same aggregation and linking as plain SQL, on a fresh copy of the same seed."""
    dbs.create(dbs.floor, template=dbs.seed)
    dbs.checkpoint()
    params = {"start": PERIOD_START, "end": PERIOD_END, "run_date": RUN_DATE}
    counts: dict[str, int] = {}
    with dbs.connect(dbs.floor) as conn:
        conn.execute(SESSION_SETUP)  # connected before the clock starts, as the run is
        conn.commit()
        cpu = CpuClock(conn.info.backend_pid)
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            params["run"] = cur.execute(FLOOR_STATEMENTS["run"], params).fetchone()[0]
            for name in ("invoices", "analyze_invoices", "time", "expenses", "milestones", "totals"):
                cur.execute(FLOOR_STATEMENTS[name], params)
                counts[name] = cur.rowcount
        elapsed = time.perf_counter() - started  # after COMMIT (deferred FK checks included)
        cpu_s = cpu.stop()
        lines = conn.execute("SELECT count(*) FROM billing_invoiceline").fetchone()[0]
    return {
        "entries": counts["time"],
        "expenses": counts["expenses"],
        "milestones": counts["milestones"],
        "invoices": counts["invoices"],
        "lines": lines,
        "floor_s": round(elapsed, 3),
        "cpu_s": cpu_s,
    }


# --------------------------------------------------------------------------- driver


def bench_scale(dbs: Databases, contracts: int, entries: int, profile: Path | None, repeat: int) -> dict:
    """Seed once; then `repeat` × (run, floor), alternating, each on a fresh copy; the best of each counts.

    The machine is shared: other work only ever adds time, so the minimum is the
    least disturbed measurement of each side.
    """
    seed_s = seed(dbs, contracts, entries)
    runs, floors = [], []
    for attempt in range(repeat):
        runs.append(measure_run(dbs, profile if attempt == 0 else None))
        floors.append(measure_floor(dbs))
        for other in runs[:-1] + floors[:-1]:
            assert other["entries"] == runs[-1]["entries"] == floors[-1]["entries"], "not the same data"
    run = min(runs, key=lambda r: r["run_s"])
    floor = min(floors, key=lambda f: f["floor_s"])
    run_cpu = min((r["cpu_s"] for r in runs if r["cpu_s"] is not None), default=None)
    floor_cpu = min((f["cpu_s"] for f in floors if f["cpu_s"] is not None), default=None)
    return {
        "contracts": contracts,
        "entries_seeded": entries,
        "entries": run["entries"],
        "invoices": run["invoices"],
        "run_s": run["run_s"],
        "floor_s": floor["floor_s"],
        "ratio": round(run["run_s"] / floor["floor_s"], 2) if floor["floor_s"] else None,
        "queries": run["queries"],
        "lines": run["lines"],
        "expenses": run["expenses"],
        "milestones": run["milestones"],
        "invoices_by_status": run["by_status"],
        "floor": {k: floor[k] for k in ("entries", "expenses", "milestones", "invoices", "lines")},
        "seed_s": round(seed_s, 1),
        "run_samples_s": [r["run_s"] for r in runs],
        "floor_samples_s": [f["floor_s"] for f in floors],
        "run_cpu_s": run_cpu,
        "floor_cpu_s": floor_cpu,
        "cpu_ratio": round(run_cpu / floor_cpu, 2) if run_cpu and floor_cpu else None,
        # How the run's CPU divides between Python (this process) and PostgreSQL (its backends), best run.
        "run_cpu_split_s": min(
            ({"python": r["python_cpu_s"], "postgres": r["postgres_cpu_s"]} for r in runs if r["cpu_s"] is not None),
            key=lambda split: split["python"] + split["postgres"],
            default=None,
        ),
    }


def print_table(results: dict[str, dict]) -> None:
    header = f"{'scale':<8}{'contracts':>10}{'entries':>9}{'invoices':>9}{'lines':>8}{'queries':>8}"
    header += f"{'run_s':>9}{'floor_s':>9}{'ratio':>7}{'run_cpu':>9}{'floor_cpu':>10}{'cpu_ratio':>10}"
    print(header)
    for name, r in results.items():
        print(
            f"{name:<8}{r['contracts']:>10}{r['entries']:>9}{r['invoices']:>9}{r['lines']:>8}{r['queries']:>8}"
            f"{r['run_s']:>9.2f}{r['floor_s']:>9.2f}{r['ratio']:>7.2f}"
            f"{r['run_cpu_s'] or 0:>9.2f}{r['floor_cpu_s'] or 0:>10.2f}{r['cpu_ratio'] or 0:>10.2f}"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.billing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-contracts", type=int, default=4000, help="contracts at full scale (default 4000)")
    parser.add_argument("--entries", type=int, default=250_000, help="October time entries at full scale")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON result (default {RESULTS})")
    parser.add_argument("--only", choices=["full", "quarter"], help="measure one scale only (no growth)")
    parser.add_argument("--repeat", type=int, default=2, help="runs and floors per scale, best counts (default 2)")
    parser.add_argument("--profile", type=Path, help="cProfile the largest scale's first run into this file")
    parser.add_argument("--no-migrate", action="store_true", help="reuse the migrated base database as it is")
    parser.add_argument("--keep", action="store_true", help="keep the _seed/_run/_floor databases")
    parser.add_argument("--drop-all", action="store_true", help="also drop the migrated base database at the end")
    parser.add_argument(
        "--workers",
        help="comma-separated django-q2 worker counts (e.g. 1,2): the run fanned out to a qcluster, no floor",
    )
    args = parser.parse_args(argv)

    dbs = Databases()
    load_before = os.getloadavg()[0]
    scales = {
        "full": (args.scale_contracts, args.entries),
        "quarter": (max(10, args.scale_contracts // 4), args.entries // 4),
    }
    if args.only:
        scales = {args.only: scales[args.only]}

    if not args.no_migrate:
        print(f"bench.billing: migrating {dbs.base} …", flush=True)
        dbs.create(dbs.base)
        dbs.use(dbs.base)
        call_command("migrate", verbosity=0, interactive=False)
        connections["default"].close()

    results: dict[str, dict] = {}
    try:
        # The quarter first: the full scale then runs in a process as warm as a worker's.
        for name in sorted(scales, key=lambda n: scales[n][1]):
            contracts, entries = scales[name]
            print(f"bench.billing: {name}: {contracts} contracts, {entries} entries …", flush=True)
            profile = args.profile if name == max(scales, key=lambda n: scales[n][1]) else None
            if args.workers:
                counts = [int(n) for n in args.workers.split(",")]
                results[name] = bench_workers(dbs, contracts, entries, counts, max(1, args.repeat))
                continue
            results[name] = bench_scale(dbs, contracts, entries, profile, max(1, args.repeat))
            r = results[name]
            print(
                f"  seed {r['seed_s']} s, run {r['run_samples_s']} s ({r['queries']} queries), "
                f"floor {r['floor_samples_s']} s, best ratio {r['ratio']}, CPU ratio {r['cpu_ratio']}",
                flush=True,
            )
    finally:
        connections["default"].close()
        if not args.keep:
            for name in (dbs.run, dbs.floor, dbs.seed):
                dbs.drop(name)
        if args.drop_all:
            dbs.drop(dbs.base)

    output: dict = {name: results[name] for name in ("full", "quarter") if name in results}
    if args.workers:
        output["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        output["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
        output["commit"] = _git("rev-parse", "--short", "HEAD")
        out = args.out if args.out != RESULTS else RESULTS.with_name("billing_workers.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
        print(f"bench.billing: wrote {out}")
        return output
    if "full" in results and "quarter" in results:
        full, quarter = results["full"], results["quarter"]
        output["growth"] = round(full["run_s"] / quarter["run_s"], 2)
        output["entries_growth"] = round(full["entries"] / quarter["entries"], 2)
        output["floor_growth"] = round(full["floor_s"] / quarter["floor_s"], 2)
    output["machine"] = f"{os.cpu_count()} cores"
    # Other work on the machine slows both sides; the 1-minute load average before and after.
    output["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    output["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    output["environment"] = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": _server_version(dbs),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_code": bool(_git("status", "--porcelain", "--", "billing", "approvals", "portal")),
    }
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    print(f"bench.billing: wrote {args.out}")
    return output


def _git(*args: str) -> str:
    """The code measured (empty outside a git work tree)."""
    try:
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _server_version(dbs: Databases) -> str:
    with dbs.connect("postgres") as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


if __name__ == "__main__":
    main()
