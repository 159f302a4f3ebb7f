"""Guards over every /api/v1/ view, including those other parts add: scopes declared, POSTs idempotent."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from integrations.api.docs import SchemaView
from integrations.api.idempotency import IdempotentPostMixin
from integrations.api.permissions import HasScopes

VERBS = ("get", "post", "put", "patch", "delete")


def _api_views() -> list[tuple[str, type[APIView]]]:
    found = []

    def walk(patterns, prefix=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                route = prefix + str(entry.pattern)
                cls = getattr(entry.callback, "cls", None) or getattr(entry.callback, "view_class", None)
                if route.startswith("api/v1/") and cls is not None and issubclass(cls, APIView):
                    found.append((route, cls))

    walk(get_resolver().url_patterns)
    return found


def test_every_token_view_declares_scopes_for_each_method_it_offers():
    views = _api_views()
    assert len(views) >= 15
    problems = []
    for route, cls in views:
        if cls is SchemaView or not any(isinstance(p, HasScopes) for p in cls().get_permissions()):
            continue  # the schema (token or login) and signed webhooks (HMAC) authenticate otherwise
        declared = getattr(cls, "required_scopes", None)
        if declared is None:
            problems.append(f"{route}: {cls.__name__} declares no required_scopes")
        elif isinstance(declared, dict) and set(declared) <= {"GET", "POST", "PUT", "PATCH", "DELETE"}:
            offered = {verb.upper() for verb in VERBS if hasattr(cls, verb)}
            if offered - set(declared):
                problems.append(f"{route}: {cls.__name__} offers {sorted(offered - set(declared))} without scopes")
    assert not problems, "\n".join(problems)


def test_every_post_through_a_token_is_idempotent_or_says_why_not():
    problems = []
    for route, cls in _api_views():
        if not hasattr(cls, "post") or cls is SchemaView:
            continue
        token_auth = any(isinstance(p, HasScopes) for p in cls().get_permissions())
        if token_auth and not (issubclass(cls, IdempotentPostMixin) and cls.idempotent):
            problems.append(f"{route}: {cls.__name__} takes POSTs by token without Idempotency-Key handling")
        if not token_auth and cls.__doc__ is None:
            problems.append(f"{route}: {cls.__name__} (no token) should say in its docstring how it is protected")
    assert not problems, "\n".join(problems)
