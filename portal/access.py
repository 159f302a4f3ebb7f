"""Who may open a portal URL, asked of the permissions matrix — so links and the matrix cannot drift apart.

The permissions matrix (`portal.permissions_matrix`) is checked cell by cell against the
views by `tests/portal/test_permissions_matrix.py`. The navigation and the links and
buttons inside pages ask this module whether to show themselves, so a link is shown to
a role exactly when the matrix (hence the view) lets that role through: no dead ends.

The answer is per role, not per object: "may a project manager open a milestone
action" is yes (on their own projects); which objects a page lists is the view's
business. A row that depends on the object (`*-own`/`*-other`) counts as allowed when
any of its objects is allowed to the role.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from portal import selectors
from portal.permissions_matrix import COLUMNS, MATRIX, Outcome

#: What counts as "the view lets you through": the page (allow), or the service's own refusal of one
#: particular object (refused: e.g. an approval step that is someone else's).
_PASSES = frozenset({Outcome.ALLOW, Outcome.REFUSED})


@cache
def _index() -> dict[tuple[str, str], frozenset[str]]:
    """(URL name, method) → the roles the matrix lets through on at least one of its objects."""
    index: dict[tuple[str, str], set[str]] = {}
    for rule in MATRIX:
        roles = index.setdefault((rule.pattern, rule.method), set())
        roles.update(column for column, outcome in zip(COLUMNS, rule.outcomes, strict=True) if outcome in _PASSES)
    return {key: frozenset(roles) for key, roles in index.items()}


def roles_allowed(url_name: str, method: str = "GET") -> frozenset[str]:
    """The roles the matrix lets open `url_name` with `method`; KeyError when the matrix has no such row."""
    try:
        return _index()[(url_name, method.upper())]
    except KeyError:
        raise KeyError(f"{url_name} {method}: not in the permissions matrix (classify it there)") from None


def may_open(user: Any, url_name: str, method: str = "GET") -> bool:
    """Whether the matrix lets `user` (by their roles) open `url_name`; superusers pass every check."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if user.is_superuser:
        return True
    return bool(roles_allowed(url_name, method) & selectors.cached_user_roles(user))


def may_follow(user: Any, url: str) -> bool:
    """Whether `user` may follow a link given as a URL (a record's "fix it" link, say), by the view it resolves to.

    Django admin URLs: staff only (the admin checks its model permissions itself). A URL outside
    the matrix (none should be: the matrix test classifies every pattern) is not hidden.
    """
    from urllib.parse import urlsplit

    from django.urls import Resolver404, resolve

    path = urlsplit(url).path
    try:
        match = resolve(path)
    except Resolver404:
        return False
    if match.namespaces[:1] == ["admin"]:
        return bool(getattr(user, "is_staff", False) and getattr(user, "is_active", False))
    if (match.view_name, "GET") not in _index():
        return True
    return may_open(user, match.view_name, "GET")
