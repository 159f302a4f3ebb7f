"""Template helpers of the portal shell: navigation with counts, money, role labels."""
from __future__ import annotations

from html import escape

from django import template
from django.utils.safestring import mark_safe

from kernel import security
from kernel.money import money
from kernel.roles import ALL_ROLES, ROLE_LABELS, cached_user_roles, is_auditor
from portal import selectors

register = template.Library()


@register.filter
def project_options(projects) -> str:
    """`<option>`s of (pk, code, name) rows, escaped, in one join: a picker of every active project is
    hundreds of options, which a template loop renders ten times slower (and `format_html_join` three)."""
    return mark_safe(
        "".join(
            f'<option value="{escape(str(pk))}">{escape(code)} · {escape(name)}</option>' for pk, code, name in projects
        )
    )


@register.simple_tag
def mfa_enforced() -> bool:
    """Whether two-factor is enforced (everywhere but under DEBUG): the sign-in pages say which."""
    return security.mfa_enforced()


@register.inclusion_tag("portal/_nav.html", takes_context=True)
def portal_nav(context) -> dict:
    """Top navigation of the current user (shares its queries with the home page)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    items = selectors.navigation(user) if user is not None else []
    _mark_current(items, request)
    return {"items": items, "request": request}


def _mark_current(items, request) -> None:
    """aria-current on one entry: the exact URL (with its query) if listed, else the longest path prefix."""
    for item in items:
        item.current = False
    if request is None:
        return
    full, path = request.get_full_path(), request.path
    exact = next((i for i in items if i.url == full), None)
    if exact is None:
        def prefix(item) -> str:
            return item.match or item.url.split("?", 1)[0]

        prefixes = [i for i in items if prefix(i) != "/" and path.startswith(prefix(i))]
        exact = max(prefixes, key=lambda i: (len(prefix(i)), "?" not in i.url), default=None)
        if exact is None and path == "/":
            exact = next((i for i in items if i.key == "home"), None)
    if exact is not None:
        exact.current = True


@register.simple_tag(takes_context=True)
def user_role_labels(context) -> str:
    request = context.get("request")
    roles = cached_user_roles(getattr(request, "user", None))
    return ", ".join(ROLE_LABELS[r] for r in ALL_ROLES if r in roles)


@register.simple_tag(takes_context=True)
def user_role_summary(context) -> str:
    """Short form for the top bar: the role, or "N roles" (the full list goes in a tooltip)."""
    request = context.get("request")
    roles = cached_user_roles(getattr(request, "user", None))
    if len(roles) <= 1:
        return user_role_labels(context)
    return f"{len(roles)} roles"


register.filter("money", money)


@register.simple_tag(takes_context=True)
def is_auditor_user(context) -> bool:
    request = context.get("request")
    user = getattr(request, "user", None)
    return bool(user is not None and is_auditor(user))
