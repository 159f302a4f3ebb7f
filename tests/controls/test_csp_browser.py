"""A real browser loads the key pages without a Content-Security-Policy violation (own module: browser tests
are skipped as a whole without Chromium, tests/test_browser_skip.py)."""

from __future__ import annotations

import re

import pytest

from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.control("csp")

# --- a real browser: no CSP violation on the key pages ------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_key_pages_load_without_csp_violations(e2e_settings, new_page):
    from tests.login import log_in

    UserFactory(username="ctl", groups=["finance_controller"], is_staff=True)
    UserFactory(username="root", is_staff=True, is_superuser=True)
    UserFactory(username="newbie", groups=["billing_admin"], is_staff=True)  # not enrolled: the set-up page
    UserFactory(username="col", groups=["collections"], is_staff=True)
    UserFactory(username="pm", groups=["project_manager"])

    violations: list[str] = []

    def watch(page):
        page.on("console", lambda msg: violations.append(f"{page.url}: {msg.text}")
                if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text else None)
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => "
            "console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
        )
        return page

    page = watch(new_page())
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("newbie")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/accounts/mfa/"))
    assert page.locator(".mfa-qr svg").is_visible()

    page = watch(new_page())
    log_in(page, "ctl", "/billing/invoices/")
    for url in ("/", "/billing/invoices/", "/billing/exceptions/", "/billing/runs/", "/approvals/mine/",
                "/disputes/", "/insights/", "/insights/operations/", "/integrations/monitor/"):
        page.goto(url)
        page.wait_for_load_state("networkidle")

    page = watch(new_page())
    log_in(page, "col", "/disputes/collections/aging/")
    page.goto("/disputes/collections/dunning/")
    page.wait_for_load_state("networkidle")

    page = watch(new_page())
    log_in(page, "pm", "/approvals/time/")
    page.wait_for_load_state("networkidle")

    page = watch(new_page())
    log_in(page, "root", "/admin/")
    for url in ("/admin/", "/admin/billing/invoice/", "/admin/auth/user/add/", "/admin/axes/accessattempt/"):
        page.goto(url)
        page.wait_for_load_state("networkidle")

    assert violations == []

