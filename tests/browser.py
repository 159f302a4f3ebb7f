"""Browser fixtures (a pytest plugin, loaded by tests/conftest.py for every test directory).

Playwright (sync API) drives Debian's Chromium against pytest-django's live server.
One browser for the whole session, whatever directory the test is in: a second
`sync_playwright()` while one runs fails ("Sync API inside the asyncio loop"), so
test modules use these fixtures by name and never import them.

Playwright's sync API keeps an asyncio loop running in the test thread; Django
refuses ORM calls from such a thread unless told it is safe (it is: the loop
only talks to the browser).

Without Chromium every browser test (every test that uses the `browser` fixture, directly
or through `new_page`) skips in the same way, before any fixture is set up, with one notice:
the header line below and one folded "SKIPPED [n] tests/browser.py" summary line. `make test`
installs Debian's chromium first when it can (root with apt-get). CHROMIUM_PATH names
another executable (the Makefile's check reads the same variable).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run on this machine, or None when they can."""
    if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return None
    return (f"browser tests skipped: Chromium is not installed at {CHROMIUM} "
            "(`make test` installs Debian's chromium when run as root with apt-get; else: apt-get install -y chromium)")


def pytest_report_header(config):
    return chromium_missing() or f"browser tests: {CHROMIUM}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if "browser" in item.fixturenames and (reason := chromium_missing()):
        pytest.skip(reason)  # raised here, so every skip reports this one location: one folded notice


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    # Only while a browser test session runs; restored afterwards.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def e2e_settings(settings, monkeypatch):
    """Plain-HTTP live server, and django-q2 tasks run inline in the request that enqueues them.

    django-q2 1.11 copies `Q_CLUSTER["sync"]` into `Conf.SYNC` once, at import:
    overriding the setting alone does not reach `async_task`, so patch both.
    """
    from django_q.conf import Conf

    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.SECURE_SSL_REDIRECT = False
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)
    return settings


@pytest.fixture
def new_page(browser, live_server):
    """`new_page()` opens a page in a fresh browser context (its own cookies: one user each)."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1440, "height": 900})
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def shoot():
    """`shoot(page, name)`: a full-page screenshot when E2E_SCREENSHOT_DIR is set (to look at the pages)."""
    target = os.environ.get("E2E_SCREENSHOT_DIR")

    def take(page, name: str) -> None:
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)

    return take
