"""Smoke test of the billing-run benchmark (`python -m bench.billing`) at a tiny scale.

It checks the shape of the result and that the run and the plain-SQL floor billed
the same items; never timings (the machine is shared, numbers vary).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
SCALE_KEYS = {"entries", "invoices", "run_s", "floor_s", "ratio", "queries"}


def _bench_url(dbname: str) -> str:
    """The test server, a database of the benchmark's own (it drops and recreates it)."""
    s = connection.settings_dict
    auth = quote(s.get("USER") or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    host = s.get("HOST") or "127.0.0.1"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgresql://{auth}{'@' if auth else ''}{host}{port}/{dbname}"


@pytest.mark.postgres
def test_bench_billing_at_a_tiny_scale(tmp_path):
    out = tmp_path / "billing.json"
    env = {**os.environ, "DATABASE_URL": _bench_url(f"billable_bench_smoke_{os.getpid()}")}
    env.setdefault("SECRET_KEY", "bench-smoke-test-key")
    command = [sys.executable, "-m", "bench.billing", "--scale-contracts", "20", "--entries", "800", "--repeat", "1"]
    done = subprocess.run(  # noqa: S603 (our own module, no shell)
        [*command, "--out", str(out), "--drop-all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    result = json.loads(out.read_text(encoding="utf-8"))
    assert {"full", "quarter", "growth", "machine", "date"} <= result.keys()
    for scale in ("full", "quarter"):
        figures = result[scale]
        assert figures.keys() >= SCALE_KEYS, scale
        assert figures["entries"] > 0
        assert figures["invoices"] > 0
        assert figures["queries"] > 0
        # The run and the floor bill exactly the same items.
        assert figures["entries"] == figures["floor"]["entries"], scale
        assert figures["expenses"] == figures["floor"]["expenses"], scale
        assert figures["milestones"] == figures["floor"]["milestones"], scale
    assert result["full"]["entries"] > result["quarter"]["entries"]
