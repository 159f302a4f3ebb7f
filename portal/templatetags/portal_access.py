"""`may_open` / `may_post`: a link or button shows only when the permissions matrix lets the user through.

    {% load portal_access %}
    {% if request.user|may_open:"billing:run_list" %}<a href="{% url 'billing:run_list' %}">Billing runs</a>{% endif %}
    {% if request.user|may_post:"billing:invoice_approve" %}<form method="post" …>{% endif %}
"""

from __future__ import annotations

from typing import Any

from django import template

from portal import access

register = template.Library()


@register.filter(name="may_open")
def may_open(user: Any, url_name: str) -> bool:
    """A GET link the user's roles may follow (the matrix lets at least one of them through)."""
    return access.may_open(user, url_name, "GET")


@register.filter(name="may_post")
def may_post(user: Any, url_name: str) -> bool:
    """A form the user's roles may send (the view lets them through; the service may still refuse an object)."""
    return access.may_open(user, url_name, "POST")


@register.filter(name="may_follow")
def may_follow(user: Any, url: str) -> bool:
    """A link given as a URL (not a URL name), e.g. an exception's fix link: shown when its view lets the user in."""
    return bool(url) and access.may_follow(user, str(url))
