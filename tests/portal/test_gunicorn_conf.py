"""gunicorn.conf.py: the master loads the application once and freezes it before forking workers (ADR 0135)."""

from __future__ import annotations

import gc
import os
import re
import runpy
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.test_settings import CONFIG_VARS, ROOT

CONFIG = Path(ROOT) / "gunicorn.conf.py"


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args) -> None:
        self.lines.append(message % args)


class _Server:
    def __init__(self) -> None:
        self.log = _Log()


def test_when_ready_freezes_what_the_master_loaded():
    config = runpy.run_path(str(CONFIG))
    assert config["preload_app"] is True
    server = _Server()
    assert gc.get_freeze_count() == 0
    try:
        config["when_ready"](server)
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    # This process has Django and every app loaded: far more objects than a bare interpreter holds.
    assert frozen > 50_000
    assert server.log.lines == [f"Froze {frozen} objects of the loaded application before forking workers"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own local server
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_gunicorn_with_the_config_serves_pages_from_forked_workers(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS and not k.startswith(("Q_", "SECURE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="true",
        SECRET_KEY="test-only",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        ALLOWED_HOSTS="127.0.0.1",
    )
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "gunicorn"), "portal.wsgi:application", "-c", str(CONFIG)]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--log-level", "info"]
    server = subprocess.Popen(  # noqa: S603 - our own interpreter's gunicorn, fixed arguments
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        statuses = [_get(f"http://127.0.0.1:{port}/accounts/login/") for _ in range(4)]
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert statuses == [200] * 4, output
    # The master froze the application it had loaded (Django and every app), then forked the workers.
    line = next(line for line in output.splitlines() if "objects of the loaded application" in line)
    assert int(re.search(r"Froze (\d+) objects", line).group(1)) > 50_000, output
    assert output.index(line) < output.index("Booting worker"), output
