"""Bearer-token authentication of integration clients (`Authorization: Bearer bk_<prefix>_<secret>`)."""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from integrations.models import IntegrationClient
from integrations.services.clients import hash_token, split_token

LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRevoked(exceptions.AuthenticationFailed):
    default_code = "token_revoked"


class IntegrationTokenAuthentication(BaseAuthentication):
    """Find the client by the token's prefix, compare the SHA-256 in constant time.

    Sets `request.user` to the client's service user (so simple-history and the transition
    log name it) and `request.auth` to the `IntegrationClient`.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header; use 'Bearer <token>'.")
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        parts = split_token(token)
        if parts is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        client = IntegrationClient.objects.select_related("user").filter(token_prefix=parts[0]).first()
        # Compare even when no client matched, so timing does not tell which prefixes exist.
        expected = client.token_hash if client is not None else "0" * 64
        if not hmac.compare_digest(hash_token(token), expected) or client is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not client.is_active or not client.user.is_active:
            raise TokenRevoked("This token was revoked.")
        now = timezone.now()
        if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
            # A plain UPDATE on purpose: usage is not a change worth a history row.
            IntegrationClient.objects.filter(pk=client.pk).update(last_used_at=now)
            client.last_used_at = now
        return client.user, client

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


class IntegrationTokenScheme(OpenApiAuthenticationExtension):
    target_class = "integrations.api.auth.IntegrationTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "bk_<prefix>_<secret>",
            "description": "An integration client's token (`manage.py integration_client create`).",
        }
