"""Scopes: each API view says which scope each HTTP method needs (`required_scopes`)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from integrations.models import IntegrationClient

SAFE_ALIASES = {"HEAD": "GET", "OPTIONS": "GET"}


class InsufficientScope(exceptions.PermissionDenied):
    default_code = "insufficient_scope"


def integration_client(request) -> IntegrationClient | None:
    """The calling integration client, or None (not authenticated by token)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, IntegrationClient) else None


def scopes_for(view, method: str) -> list[str] | None:
    """The scopes `view` requires for `method`; None when it declares none (then access is refused).

    `required_scopes` is either a list (every method) or a dict method → list; a viewset may
    key it by action name instead (`{"list": [...], "create": [...]}`), which wins over the method.
    """
    declared = getattr(view, "required_scopes", None)
    if declared is None:
        return None
    if isinstance(declared, (list, tuple)):
        return list(declared)
    action = getattr(view, "action", None)
    if action and action in declared:
        return list(declared[action])
    method = SAFE_ALIASES.get(method, method)
    if method in declared:
        return list(declared[method])
    return None


class HasScopes(BasePermission):
    """Token required; then every scope the view declares for this method (fail closed if none)."""

    def has_permission(self, request, view) -> bool:
        client = integration_client(request)
        if client is None:
            raise exceptions.NotAuthenticated("Send 'Authorization: Bearer <token>' of an integration client.")
        if not hasattr(view, request.method.lower()):
            return True  # the view has no such method: let DRF answer 405, not a misleading 403
        needed = scopes_for(view, request.method)
        if needed is None:
            raise InsufficientScope("This endpoint declares no scope for this method; nobody may call it.")
        missing = [scope for scope in needed if not client.has_scope(scope)]
        if missing:
            raise InsufficientScope(f"This client lacks the scope(s): {', '.join(missing)}.")
        return True
