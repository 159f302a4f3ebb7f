"""A real django-q2 cluster (`qcluster`, e-mail delivery off) in a subprocess, against the test database.

The test process commits its data (transactional tests) and queues tasks through the ORM
broker; the cluster's workers run them, talking to the ERP simulator over HTTP. The
periodic sweep runs in the test process every half second (`Sweeper`), standing in for
the once-a-minute django-q2 schedule, so retries come round in seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.db import connection, connections

ROOT = Path(__file__).resolve().parents[3]


def test_database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgresql://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(erp_url: str, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CONN_MAX_AGE": "0",
        "ERP_POSTING_ENABLED": "true",
        "ERP_BASE_URL": erp_url,
        "ERP_AUTH": "none",
        "ERP_TIMEOUT_S": "1",
        "OUTBOX_MAX_ATTEMPTS": "8",
        "OUTBOX_BACKOFF_BASE_S": "0.05",
        "OUTBOX_BACKOFF_CAP_S": "0.5",
        "OUTBOX_LEASE_S": "3",
        "OUTBOX_SWEEP_GRACE_S": "10",
        "ERP_CIRCUIT_FAILURES": "5",
        "ERP_CIRCUIT_COOLDOWN_S": "0.5",
        "Q_WORKERS": "4",
        "Q_TIMEOUT": "20",
        "Q_RETRY": "30",
        "Q_POLL": "0.05",
        "Q_SCHEDULER": "false",
        "LOG_LEVEL": os.environ.get("OUTBOX_WORKER_LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


class Cluster:
    """`manage.py qcluster` in its own process group, so a SIGKILL takes the sentinel and its workers."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen | None = None

    def start(self) -> Cluster:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, str(Path(__file__).with_name("qcluster_erp_only.py"))],
            cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the whole cluster: no cleanup, no acknowledgement, leases left behind."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class Sweeper(threading.Thread):
    """The outbox sweep, every `interval` seconds, in a thread of the test process."""

    def __init__(self, settings_overrides: dict, interval: float = 0.5):
        super().__init__(daemon=True, name="outbox-sweeper")
        self.interval = interval
        self.overrides = settings_overrides
        self.halt = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        from django.test import override_settings

        from integrations.services.outbox import outbox_sweep

        try:
            with override_settings(**self.overrides):
                while not self.halt.wait(self.interval):
                    outbox_sweep()
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def wait_for(predicate, *, timeout: float, interval: float = 0.25, what=lambda: "condition") -> None:
    """Poll `predicate`; on time-out fail with `what()` (a callable: it says how things stand then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what()}")
