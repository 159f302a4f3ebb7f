"""Base classes and helpers for API views (how to add an endpoint: see `integrations/api/__init__.py`)."""

from __future__ import annotations

from typing import Any

from rest_framework import generics, serializers, viewsets
from rest_framework.views import APIView

from integrations.api.idempotency import IdempotentPostMixin
from integrations.api.permissions import integration_client
from integrations.models import IntegrationClient
from kernel.errors import PermissionDeniedError


class ApiView(IdempotentPostMixin, APIView):
    """A plain API view: declare `required_scopes`, write `get`/`post`."""

    required_scopes: list[str] | dict[str, list[str]] | None = None


class ApiGenericView(IdempotentPostMixin, generics.GenericAPIView):
    required_scopes: list[str] | dict[str, list[str]] | None = None


class ApiListView(IdempotentPostMixin, generics.ListAPIView):
    """A filtered, cursor-paginated list: set `queryset`/`get_queryset`, `serializer_class`, `filterset_class`."""

    required_scopes: list[str] | dict[str, list[str]] | None = None


class ApiRetrieveView(IdempotentPostMixin, generics.RetrieveAPIView):
    required_scopes: list[str] | dict[str, list[str]] | None = None


class ApiViewSet(IdempotentPostMixin, viewsets.GenericViewSet):
    """A viewset; `required_scopes` may be keyed by action (`{"list": [...], "create": [...]}`)."""

    required_scopes: list[str] | dict[str, list[str]] | None = None


def client_of(request) -> IntegrationClient:
    """The calling client (always set behind `HasScopes`)."""
    client = integration_client(request)
    if client is None:
        raise PermissionDeniedError("Not an integration client.")
    return client


def validate(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict:
    """Validate input with a serializer; raises DRF ValidationError (→ 400 in the error shape)."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
