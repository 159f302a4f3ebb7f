"""Admin of the integration models: read-only pages, and the dead-letter retry action through the service."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse
from django_fsm_log.models import StateLog

from integrations.models import EndpointCircuit, OutboxMessage
from tests.factories import UserFactory
from tests.integrations.outbox.test_monitor import _dead_letters

pytestmark = pytest.mark.django_db
MODELS = [m for m in apps.get_app_config("integrations").get_models() if not m.__name__.startswith("Historical")]
#: Configuration billing admins enter by hand (which ERP company and taxes an entity posts to).
EDITABLE = {"ErpEntityMapping", "ErpTaxMapping"}


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_integrations_model_is_registered_and_cannot_be_added_by_hand(client):
    assert [m.__name__ for m in MODELS if not admin.site.is_registered(m)] == []
    _dead_letters(1)
    EndpointCircuit.objects.create(endpoint="erp")
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    for model in MODELS:
        assert client.get(_url(model, "changelist")).status_code == 200, model.__name__
        add = 200 if model.__name__ in EDITABLE else 403
        assert client.get(_url(model, "add")).status_code == add, model.__name__
    message = OutboxMessage.objects.first()
    page = client.get(_url(OutboxMessage, "change", message.pk))
    assert page.status_code == 200 and message.idempotency_key in page.content.decode()


def test_finance_retries_dead_letters_from_the_admin_with_a_reason(client):
    message = _dead_letters(1)[0]
    analyst = UserFactory(username="fa-admin", is_staff=True, groups=["finance_analyst"])
    client.force_login(analyst)
    url = _url(OutboxMessage, "changelist")
    response = client.post(url, {"action": "outbox_retry_dead", "_selected_action": [message.pk], "apply": "1",
                                 "reason": "ERP maintenance over"})
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.PENDING
    assert StateLog.objects.for_(message).get(transition="retry").by == analyst


def test_auditor_cannot_retry_from_the_admin(client):
    message = _dead_letters(1)[0]
    client.force_login(UserFactory(username="aud-admin", is_staff=True, groups=["auditor"]))
    assert client.get(_url(OutboxMessage, "changelist")).status_code == 200
    client.post(_url(OutboxMessage, "changelist"), {"action": "outbox_retry_dead",
                                                    "_selected_action": [message.pk], "apply": "1", "reason": "x"})
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DEAD
