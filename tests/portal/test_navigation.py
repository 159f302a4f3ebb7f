"""No dead ends: every link a role is shown answers 200 to that role, and every button posts where it may.

For each role, starting from its landing pages (home, the page `approvals:index` sends it to,
and every entry of its main navigation), the test follows every link of the portal it finds
— breadth first, through the pages it reaches, a few pages per URL name — and requires each
to answer 200 for that role (a 403 is a link the role should never have been shown). Every
POST form found on those pages must target a URL the permissions matrix lets that role post
to (the matrix itself is checked against the views by test_permissions_matrix.py).

The objects are the permissions matrix's world (a billing run, invoices in each state,
submitted work, disputes, unapplied cash …), built once for the module and rolled back.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client, override_settings
from django.urls import Resolver404, resolve, reverse

from kernel.roles import ALL_ROLES
from portal import access
from tests.portal.test_permissions_matrix import FAST_HASHERS, World, build_world

pytestmark = pytest.mark.django_db

#: Pages per URL name the crawl opens (the first ones it meets): the same view with other objects or
#: filters answers the same way to a role, and the crawl stays bounded.
PAGES_PER_NAME = 2
#: Not followed: Django admin guards itself by model permissions (its index is in the matrix), the API
#: authenticates integration clients by token, static and media files are not pages.
SKIP_PREFIXES = ("/admin/", "/api/", "/static/", "/media/")


class _Links(HTMLParser):
    """The hrefs of <a> and the (method, action) of <form> in a page; the main nav's hrefs apart."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.nav: list[str] = []
        self.forms: list[tuple[str, str]] = []
        self._nav_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "nav" and "mainnav" in (a.get("class") or ""):
            self._nav_depth = 1
        elif tag == "nav" and self._nav_depth:
            self._nav_depth += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if self._nav_depth:
                self.nav.append(a["href"])
        if tag == "form":
            self.forms.append(((a.get("method") or "get").upper(), a.get("action") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self._nav_depth:
            self._nav_depth -= 1


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _portal_url(base: str, href: str) -> str | None:
    """The portal-relative URL of a link, or None for fragments, other sites, admin, files, mailto."""
    href = href.strip()
    if not href or href.startswith(("#", "mailto:", "tel:", "javascript:")):
        return None
    parts = urlsplit(urljoin(base, href))
    if parts.netloc and parts.netloc != "testserver":
        return None
    if parts.path.startswith(SKIP_PREFIXES):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _url_name(url: str) -> str:
    match = resolve(urlsplit(url).path)
    return match.view_name


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    media = tmp_path_factory.mktemp("navigation-media")
    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=str(media), PASSWORD_HASHERS=FAST_HASHERS),
        transaction.atomic(),
    ):
        yield build_world()
        transaction.set_rollback(True)


def _client(world: World, role: str) -> Client:
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[role]
    return client


@pytest.mark.parametrize("role", ALL_ROLES)
def test_every_link_a_role_is_shown_opens_for_it(role: str, world: World):
    client = _client(world, role)
    landing = client.get(reverse("approvals:index"))
    assert landing.status_code == 302, landing.status_code
    home = client.get(reverse("home"))
    assert home.status_code == 200
    nav = [u for u in (_portal_url("/", h) for h in _parse(home.content.decode()).nav) if u]
    assert len(nav) >= 2, f"{role}: the main navigation offers only {nav}"

    start = [reverse("home"), landing["Location"], *nav]
    queue: deque[tuple[str, str]] = deque((url, "the landing pages") for url in start)
    seen: set[str] = set()
    opened: Counter[str] = Counter()
    dead: list[str] = []
    bad_forms: list[str] = []
    while queue:
        url, found_on = queue.popleft()
        if url in seen:
            continue
        seen.add(url)
        try:
            name = _url_name(url)
        except Resolver404:
            dead.append(f"{url} (404: no such page) on {found_on}")
            continue
        if opened[name] >= PAGES_PER_NAME:
            continue
        opened[name] += 1
        response = client.get(url, follow=True)
        if response.status_code != 200:
            dead.append(f"{url} ({response.status_code}) on {found_on}")
            continue
        if response.streaming or "text/html" not in response.get("Content-Type", ""):
            if response.streaming:
                b"".join(response.streaming_content)
            continue
        page = _parse(response.content.decode())
        for href in page.links:
            target = _portal_url(url, href)
            if target and target not in seen:
                queue.append((target, url))
        for method, action in page.forms:
            target = _portal_url(url, action) if action else url
            if not target:
                continue
            try:
                form_name = _url_name(target)
            except Resolver404:
                bad_forms.append(f"{method} {target} (404) on {url}")
                continue
            if method == "GET":
                if target not in seen:
                    queue.append((target, url))
            elif role not in access.roles_allowed(form_name, "POST") and form_name != "logout":
                bad_forms.append(f"POST {target} ({form_name}: the matrix denies {role}) on {url}")

    assert not dead, f"{role} is shown links that do not open for it:\n" + "\n".join(dead)
    assert not bad_forms, f"{role} is shown forms it may not send:\n" + "\n".join(bad_forms)
    assert opened, role


def test_the_menu_offers_each_role_only_what_the_matrix_lets_it_open(world: World):
    """The menu is gated by the matrix: each nav entry's URL name lets that role GET it."""
    for role in ALL_ROLES:
        client = _client(world, role)
        html = client.get(reverse("home")).content.decode()
        for href in _parse(html).nav:
            url = _portal_url("/", href)
            if url is None:  # Django admin: staff only, its own model permissions
                assert href.startswith("/admin/"), href
                continue
            name = _url_name(url)
            assert role in access.roles_allowed(name), f"{role} is offered {name} ({url}), which the matrix denies"
