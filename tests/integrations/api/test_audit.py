"""API clients are audited like people: a plain save in an API request is attributed to the service user."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import include, path
from rest_framework.response import Response

from billing.models import Client
from integrations.api.base import ApiView
from tests.factories import ClientFactory

from .conftest import bearer

pytestmark = pytest.mark.django_db


class _RenameClient(ApiView):
    """A test-only endpoint that saves without naming a user: simple-history must still know who."""

    required_scopes = {"POST": ["write:masterdata"]}

    def post(self, request, pk):
        client = Client.objects.get(pk=pk)
        client.legal_name = request.data["legal_name"]
        client.save()
        return Response({"ok": True})


urlpatterns = [
    path("api/v1/", include(([path("test-rename/<int:pk>/", _RenameClient.as_view())], "api"))),
]


@override_settings(ROOT_URLCONF=__name__)
def test_history_names_the_service_user_without_the_view_saying_so(make_client):
    integration, token = make_client("crm", ("write:masterdata",))
    customer = ClientFactory()
    response = bearer(token).post(
        f"/api/v1/test-rename/{customer.pk}/", {"legal_name": "Renamed GmbH"}, format="json",
        HTTP_IDEMPOTENCY_KEY="rename-1",
    )
    assert response.status_code == 200, response.content
    latest = customer.history.latest("history_date")
    assert latest.legal_name == "Renamed GmbH"
    assert latest.history_user == integration.user
    assert latest.history_user.username == "api-crm"
