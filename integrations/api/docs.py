"""The OpenAPI 3 schema and its two readers (Swagger UI, ReDoc), served from vendored assets.

The schema is readable with any integration client's token or a portal login; the two
documentation pages are for logged-in portal users (they read the schema with the session;
"Authorize" in Swagger UI takes a client token for trying calls).
"""

from __future__ import annotations

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.views import SpectacularAPIView
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer

from integrations.api.auth import IntegrationTokenAuthentication


class TokenOrPortalUser(BasePermission):
    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated("Send a client token, or log in to the portal.")
        return True


class SchemaView(SpectacularAPIView):
    authentication_classes = [IntegrationTokenAuthentication, SessionAuthentication]
    permission_classes = [TokenOrPortalUser]
    throttle_classes: list = []

    def handle_exception(self, exc):
        """Errors in the API's JSON error shape, not rendered as an OpenAPI document."""
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


#: The vendored documentation UIs style their widgets with injected <style> elements, and ReDoc runs its
#: search in a worker made from a blob: URL: on these two pages only, styles may be inline and blob: scripts
#: (which only the page's own scripts can create) may run; no inline script, no eval.
DOCS_CSP = {"script-src": [SELF, "blob:"], "style-src": [SELF, UNSAFE_INLINE], "img-src": [SELF, "data:", "blob:"],
            "worker-src": [SELF, "blob:"], "font-src": [SELF, "data:"]}


@require_GET
@login_required
@csp_update(DOCS_CSP)
def swagger_ui(request: HttpRequest) -> HttpResponse:
    return render(request, "integrations/api/swagger_ui.html", {"schema_url": reverse("api:schema")})


@require_GET
@login_required
@csp_update(DOCS_CSP)
def redoc(request: HttpRequest) -> HttpResponse:
    return render(request, "integrations/api/redoc.html", {"schema_url": reverse("api:schema")})
