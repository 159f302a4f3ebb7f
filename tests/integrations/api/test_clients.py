"""Integration clients: the service and the `integration_client` command."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.core.management import CommandError, call_command

from integrations.models import IntegrationClient
from integrations.services.clients import SCOPE_ROLES, SCOPES, integration_client_create
from kernel.errors import ApplicationError, ConflictError
from kernel.roles import FINANCE_ANALYST, user_roles

from .conftest import bearer

pytestmark = pytest.mark.django_db


def test_create_stores_only_a_prefix_and_a_hash(make_client):
    client, token = make_client("crm", ("read:masterdata",))
    prefix = token.split("_")[1]
    assert token.startswith(f"bk_{prefix}_") and len(token) > 50
    assert client.token_prefix == prefix
    assert client.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(IntegrationClient.objects.filter(pk=client.pk).values().get())
    assert client.webhook_secret.startswith("whsec_")
    assert client.user.username == "api-crm"


def test_write_scopes_give_the_service_user_the_roles_the_services_check(make_client):
    reader, _ = make_client("bi", ("read:billing", "read:kpis"))
    writer, _ = make_client("ops", ("read:billing", "write:billing"))
    assert user_roles(reader.user) == set()
    assert user_roles(writer.user) == {FINANCE_ANALYST}
    assert set(SCOPE_ROLES) <= set(SCOPES)


def test_history_names_who_created_it(django_user_model):
    admin = django_user_model.objects.create_user("admin-x", password="x" * 20)
    client, _token, _secret = integration_client_create(name="erp", scopes=["read:billing"], user=admin)
    assert client.history.get().history_user == admin


@pytest.mark.parametrize(
    ("name", "scopes", "error"),
    [
        ("psa", ["read:everything"], "Unknown scope"),
        ("psa", [], "at least one scope"),
        ("Bad Name!", ["read:billing"], "lowercase"),
    ],
)
def test_create_refuses_bad_input(name, scopes, error):
    with pytest.raises(ApplicationError, match=error):
        integration_client_create(name=name, scopes=scopes)
    assert not IntegrationClient.objects.exists()


def test_names_are_unique(make_client):
    make_client("psa")
    with pytest.raises(ConflictError):
        integration_client_create(name="psa", scopes=["read:billing"])


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("integration_client", *args, stdout=out)
    return out.getvalue()


def test_command_create_prints_a_working_token_once_and_revoke_makes_it_401():
    output = _run("create", "psa", "--scopes", "read:billing,write:time", "--source", "psa")
    token = re.search(r"^token: (\S+)$", output, re.M).group(1)
    secret = re.search(r"^webhook secret: (\S+)$", output, re.M).group(1)
    client = IntegrationClient.objects.get(name="psa")
    assert client.source == "psa" and client.scopes == ["read:billing", "write:time"]
    assert client.webhook_secret == secret
    api = bearer(token)
    assert api.get("/api/v1/whoami/").json()["name"] == "psa"

    listing = _run("list")
    assert "psa" in listing and "active" in listing and token not in listing

    assert "Revoked psa" in _run("revoke", "psa")
    assert api.get("/api/v1/whoami/").status_code == 401
    assert "revoked" in _run("list")


def test_command_rotate_and_errors():
    _run("create", "crm", "--scopes", "read:masterdata")
    new = re.search(r"^token: (\S+)$", _run("rotate", "crm"), re.M).group(1)
    assert bearer(new).get("/api/v1/whoami/").status_code == 200
    with pytest.raises(CommandError, match="Unknown scope"):
        _run("create", "x1", "--scopes", "root")
    with pytest.raises(CommandError, match="No integration client"):
        _run("revoke", "nobody")
    assert "write:billing" in _run("scopes")


def test_update_changes_scopes_and_roles_with_the_same_token():
    output = _run("create", "ops", "--scopes", "read:billing")
    token = re.search(r"^token: (\S+)$", output, re.M).group(1)
    api = bearer(token)
    assert api.post("/api/v1/billing-runs/", {}, format="json", HTTP_IDEMPOTENCY_KEY="u1").status_code == 403
    updated = _run("update", "ops", "--scopes", "read:billing,write:billing", "--throttle-rate", "60/min")
    assert "write:billing" in updated
    client = IntegrationClient.objects.get(name="ops")
    assert client.throttle_rate == "60/min" and user_roles(client.user) == {FINANCE_ANALYST}
    assert api.get("/api/v1/whoami/").json()["scopes"] == ["read:billing", "write:billing"]
    _run("update", "ops", "--scopes", "read:billing")
    assert user_roles(IntegrationClient.objects.get(name="ops").user) == set()  # the role goes with the scope
    assert client.history.count() == 3
    with pytest.raises(CommandError, match="Invalid throttle rate"):
        _run("update", "ops", "--throttle-rate", "lots")
    with pytest.raises(CommandError, match="Invalid throttle rate"):
        _run("create", "x2", "--scopes", "read:billing", "--throttle-rate", "5/fortnight")


def test_purge_keys_forgets_only_old_idempotency_records(make_client):
    import datetime

    from django.utils import timezone

    from integrations.models import IdempotencyRecord

    client, _token = make_client()
    old = IdempotencyRecord.objects.create(client=client, key="old", method="POST", path="/x", request_sha256="0")
    new = IdempotencyRecord.objects.create(client=client, key="new", method="POST", path="/x", request_sha256="0")
    IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=91))
    assert "Forgot 1 idempotency key(s) older than 90 days." in _run("purge-keys")
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [new.pk]
    with pytest.raises(CommandError, match="at least one day"):
        _run("purge-keys", "--days", "0")
