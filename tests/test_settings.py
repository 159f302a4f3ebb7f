"""Settings come from the environment: production refuses to start without a secret key."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'debug': s.DEBUG, 'q': s.Q_CLUSTER, 'ssl_redirect': s.SECURE_SSL_REDIRECT, "
    "'hsts': s.SECURE_HSTS_SECONDS, 'session_secure': s.SESSION_COOKIE_SECURE, "
    "'csrf_secure': s.CSRF_COOKIE_SECURE, 'engine': s.DATABASES['default']['ENGINE']}))"
)
# Configuration this test process may carry (pytest-env defaults, other test modules) that the
# child must not inherit: each case states its whole configuration.
CONFIG_VARS = ("SECRET_KEY", "DEBUG", "Q_REDIS_URL", "DATABASE_URL", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE",
               "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "STATICFILES_BACKEND", "ALLOWED_HOSTS",
               "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS and not k.startswith(("Q_", "SECURE_"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "portal.settings", **env})
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def settings_under(**env: str) -> dict:
    result = run_python(PRINT_SETTINGS, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_secret_key_is_required_when_debug_is_off():
    result = run_python("import django; django.setup()", DEBUG="false")

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_debug_runs_without_a_secret_key_on_sqlite():
    s = settings_under(DEBUG="1")

    assert s["debug"] is True
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["ssl_redirect"] is False


def test_production_defaults_are_secure():
    s = settings_under(SECRET_KEY="x" * 60)

    assert s["debug"] is False
    assert s["ssl_redirect"] is True
    assert s["session_secure"] is True and s["csrf_secure"] is True
    assert s["hsts"] >= 31_536_000


def test_django_q_uses_the_orm_broker_by_default():
    q = settings_under(DEBUG="1")["q"]

    assert q["orm"] == "default"
    assert "redis" not in q
    assert q["timeout"] < q["retry"]
    assert q["max_attempts"] > 0


def test_q_redis_url_switches_the_broker_to_redis():
    q = settings_under(DEBUG="1", Q_REDIS_URL="redis://127.0.0.1:6379/3")["q"]

    assert q["redis"] == "redis://127.0.0.1:6379/3"
    assert "orm" not in q


def test_deploy_checks_pass_with_production_settings():
    result = run_python(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        SECRET_KEY="a-long-random-production-secret-key-" + "k" * 40,
        ALLOWED_HOSTS="billable.example.com",
    )

    assert result.returncode == 0, result.stdout + result.stderr
