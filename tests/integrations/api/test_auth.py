"""Token authentication, scopes, throttling, correlation ids and the error shape, through the real stack."""

from __future__ import annotations

import logging

import pytest
from rest_framework.test import APIClient

from integrations.models import IntegrationClient
from integrations.services.clients import integration_client_revoke, integration_client_rotate

from .conftest import bearer
from .helpers import assert_error

pytestmark = pytest.mark.django_db
WHOAMI = "/api/v1/whoami/"
RUNS = "/api/v1/billing-runs/"


def test_a_valid_token_names_its_client_and_service_user(make_client):
    client, token = make_client("psa", ("read:billing", "write:time"), source="psa")
    response = bearer(token).get(WHOAMI)
    assert response.status_code == 200
    assert response.json() == {
        "name": "psa",
        "source": "psa",
        "scopes": ["read:billing", "write:time"],
        "throttle_rate": "1200/min",
        "service_user": "api-psa",
    }
    client.refresh_from_db()
    assert client.last_used_at is not None


def test_missing_token_is_401_in_the_error_shape(db):
    response = APIClient().get(WHOAMI)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer nonsense",
        "Bearer bk_000000000000_wrong",
        "Bearer",
        "Bearer a b",
        "Token bk_x_y",  # another scheme: not ours, so not authenticated
    ],
)
def test_bad_tokens_are_401(make_client, header):
    make_client()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header)
    response = api.get(WHOAMI)
    assert response.status_code == 401
    assert_error(response, 401, response.json()["code"])
    assert response.json()["code"] in {"authentication_failed", "not_authenticated"}


def test_a_right_prefix_with_a_wrong_secret_is_401(make_client):
    client, token = make_client()
    forged = f"bk_{client.token_prefix}_{'x' * 43}"
    assert forged != token
    assert_error(bearer(forged).get(WHOAMI), 401, "authentication_failed")


def test_a_revoked_token_is_401_at_once(make_client):
    client, token = make_client()
    api = bearer(token)
    assert api.get(WHOAMI).status_code == 200
    integration_client_revoke(name=client.name)
    body = assert_error(api.get(WHOAMI), 401, "token_revoked")
    assert "revoked" in body["message"]


def test_rotating_a_token_retires_the_old_one(make_client):
    client, old = make_client()
    _client, new = integration_client_rotate(name=client.name)
    assert_error(bearer(old).get(WHOAMI), 401, "authentication_failed")
    assert bearer(new).get(WHOAMI).status_code == 200


def test_a_missing_scope_is_403_naming_it(make_client):
    _client, token = make_client("crm", ("read:masterdata",))
    body = assert_error(bearer(token).get(RUNS), 403, "insufficient_scope")
    assert "read:billing" in body["message"]


def test_read_scope_does_not_allow_writes(reader):
    _client, api = reader
    body = assert_error(
        api.post(RUNS, {"period": "2025-03", "run_date": "2025-04-01"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"),
        403,
        "insufficient_scope",
    )
    assert "write:billing" in body["message"]


def test_session_login_does_not_open_the_api(client, django_user_model):
    """Portal users (cookies) do not reach the data API: only tokens do (no CSRF surface)."""
    user = django_user_model.objects.create_user("finance", password="x" * 20, is_superuser=True)
    client.force_login(user)
    assert_error(client.get(RUNS), 401, "not_authenticated")


def test_throttling_is_per_client_with_retry_after(make_client):
    _slow, slow_token = make_client("slow", ("read:billing",), throttle_rate="3/min")
    _fast, fast_token = make_client("fast", ("read:billing",))
    slow, fast = bearer(slow_token), bearer(fast_token)
    assert [slow.get(WHOAMI).status_code for _ in range(3)] == [200, 200, 200]
    response = slow.get(WHOAMI)
    body = assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["Retry-After"] in body["message"]
    assert fast.get(WHOAMI).status_code == 200  # another client has its own budget


def test_every_response_has_a_correlation_id_and_echoes_a_well_formed_one(reader, client):
    _c, api = reader
    generated = api.get(WHOAMI)["X-Correlation-ID"]
    assert len(generated) == 32
    assert api.get(WHOAMI)["X-Correlation-ID"] != generated  # a new one per request
    assert api.get(WHOAMI, HTTP_X_CORRELATION_ID="ipaas-trace-0042")["X-Correlation-ID"] == "ipaas-trace-0042"
    bad = api.get(WHOAMI, HTTP_X_CORRELATION_ID="bad id with spaces\n")["X-Correlation-ID"]
    assert bad != "bad id with spaces\n" and len(bad) == 32
    assert "X-Correlation-ID" in APIClient().get(WHOAMI)  # errors too
    assert "X-Correlation-ID" in client.get("/accounts/login/")  # and the portal's pages


def test_log_lines_carry_the_correlation_id(writer, caplog, settings):
    """The console handler's filter stamps each record with the id of the request it was written in."""
    from integrations.middleware import CorrelationIdFilter

    assert "correlation_id" in settings.LOGGING["handlers"]["console"]["filters"]
    assert "%(correlation_id)s" in settings.LOGGING["formatters"]["plain"]["format"]
    _c, api = writer
    caplog.handler.addFilter(CorrelationIdFilter())
    with caplog.at_level(logging.INFO, logger="billing.services.billing_run"):
        api.post(
            RUNS,
            {"period": "2025-03", "run_date": "2025-04-01"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="log-1",
            HTTP_X_CORRELATION_ID="trace-log-0001",
        )
        logging.getLogger("billing.services.billing_run").info("outside a request")
    queued = [r for r in caplog.records if "queued" in r.getMessage()]
    assert [r.correlation_id for r in queued] == ["trace-log-0001"]
    assert caplog.records[-1].correlation_id == "-"


def test_unknown_api_urls_and_bad_ids_answer_in_the_error_shape(reader):
    _c, api = reader
    assert_error(api.get("/api/v1/no-such-thing/"), 404, "not_found")
    assert_error(api.get("/api/v1/billing-runs/999999/"), 404, "not_found")
    assert_error(api.get("/api/v1/billing-runs/abc/"), 404, "not_found")


def test_a_malformed_json_body_is_400_in_the_error_shape(writer):
    _c, api = writer
    response = api.generic(
        "POST", RUNS, "{not json", content_type="application/json", HTTP_IDEMPOTENCY_KEY="bad-json-1"
    )
    assert_error(response, 400, "parse_error")


def test_validation_errors_name_their_fields(writer):
    _c, api = writer
    response = api.post(RUNS, {"period": "March", "run_date": "soon"}, format="json", HTTP_IDEMPOTENCY_KEY="v-1")
    body = assert_error(response, 400, "invalid")
    assert set(body["field_errors"]) == {"period", "run_date"}


def test_wrong_method_is_405_in_the_error_shape(reader):
    _c, api = reader
    assert_error(api.delete(WHOAMI), 405, "method_not_allowed")
    assert_error(api.post("/api/v1/invoices/", {}, format="json", HTTP_IDEMPOTENCY_KEY="m1"), 405, "method_not_allowed")
    assert_error(APIClient().post("/api/v1/invoices/", {}), 401, "not_authenticated")  # still: who are you?


def test_service_user_cannot_log_in_and_is_not_staff(make_client):
    client, _token = make_client()
    user = client.user
    assert not user.has_usable_password() and not user.is_staff and not user.is_superuser
    assert IntegrationClient.objects.get(user=user) == client


def test_content_negotiation_and_media_type_errors_are_in_the_error_shape(writer):
    _c, api = writer
    assert_error(api.get(WHOAMI, HTTP_ACCEPT="text/html"), 406, "not_acceptable")
    response = api.post(RUNS, "period=2025-03", content_type="application/x-www-form-urlencoded",
                        HTTP_IDEMPOTENCY_KEY="form-1")
    assert_error(response, 415, "unsupported_media_type")


def test_a_body_over_the_upload_limit_is_413_not_a_crash(writer, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    _c, api = writer
    body = {"period": "2025-03", "run_date": "2025-04-01", "contract_codes": [f"C-{i:04d}" for i in range(300)]}
    assert_error(api.post(RUNS, body, format="json", HTTP_IDEMPOTENCY_KEY="big-1"), 413, "request_too_large")


def test_a_mistyped_rate_in_the_database_falls_back_to_the_default(make_client):
    client, token = make_client("odd")
    IntegrationClient.objects.filter(pk=client.pk).update(throttle_rate="many")
    assert bearer(token).get(WHOAMI).status_code == 200


def test_even_the_https_redirect_carries_a_correlation_id(settings, db):
    settings.SECURE_SSL_REDIRECT = True
    response = APIClient().get(WHOAMI, HTTP_X_CORRELATION_ID="edge-trace-0007")
    assert response.status_code == 301 and response["Location"].startswith("https://")
    assert response["X-Correlation-ID"] == "edge-trace-0007"
