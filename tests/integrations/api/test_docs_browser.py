"""Swagger UI and ReDoc render the live schema in a real browser, from vendored assets only (no request leaves)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _log_in(page, next_url: str) -> None:
    page.goto(f"/accounts/login/?next={next_url}")
    page.get_by_label("Username").fill("integration-dev")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(next_url) + "$"))


@pytest.fixture
def watched_page(new_page, live_server, e2e_settings):
    """A page that records every request going anywhere but the live server."""
    UserFactory(username="integration-dev", groups=["finance_analyst"])
    page = new_page()
    own = urlsplit(live_server.url).netloc
    foreign: list[str] = []
    page.on("request", lambda request: foreign.append(request.url) if urlsplit(request.url).netloc != own
            and not request.url.startswith(("data:", "blob:")) else None)
    page.foreign_requests = foreign
    return page


def test_swagger_ui_and_redoc_render_the_live_schema(watched_page, shoot):
    page = watched_page
    _log_in(page, "/api/v1/docs/")
    page.locator(".opblock").first.wait_for(timeout=30_000)
    assert page.locator(".opblock").count() >= 15
    assert page.get_by_text("/api/v1/billing-runs/").first.is_visible()
    assert page.locator("button.authorize").is_visible()  # paste a client token here to try calls
    shoot(page, "api-swagger-ui")

    page.goto("/api/v1/redoc/")
    page.locator("h1", has_text="Billable API").wait_for(timeout=30_000)
    page.locator("h2", has_text="Start a billing run").wait_for()
    assert page.foreign_requests == []
