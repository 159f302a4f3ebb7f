"""GET /api/v1/whoami/: which client a token belongs to and what it may do (a token check for integrators)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from integrations.api.base import ApiView, client_of


class WhoAmISerializer(serializers.Serializer):
    name = serializers.CharField()
    source = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    throttle_rate = serializers.CharField()
    service_user = serializers.CharField()


class WhoAmIView(ApiView):
    required_scopes: list[str] = []  # any valid token

    @extend_schema(responses=WhoAmISerializer, tags=["meta"], summary="The calling client and its scopes")
    def get(self, request):
        client = client_of(request)
        return Response(
            WhoAmISerializer(
                {
                    "name": client.name,
                    "source": client.source,
                    "scopes": client.scopes,
                    "throttle_rate": client.throttle_rate,
                    "service_user": client.user.username,
                }
            ).data
        )
