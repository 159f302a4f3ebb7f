"""The OpenAPI schema and its readers: served from vendored assets, with the bearer scheme and the error shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from .helpers import assert_error

pytestmark = pytest.mark.django_db


def test_schema_with_a_token_is_openapi_3_with_the_bearer_scheme(reader):
    _c, api = reader
    response = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "bk_<prefix>_<secret>",
        "description": "An integration client's token (`manage.py integration_client create`).",
    }
    paths = schema["paths"]
    for path in ("/api/v1/invoices/", "/api/v1/billing-runs/", "/api/v1/invoices/{id}/disputes/",
                 "/api/v1/invoices/{id}/pdf", "/api/v1/exceptions/"):
        assert path in paths, path
    post = paths["/api/v1/billing-runs/"]["post"]
    assert {"202", "400", "401", "403", "409", "429"} <= set(post["responses"])
    headers = {p["name"]: p for p in post["parameters"] if p["in"] == "header"}
    assert headers["Idempotency-Key"]["required"] is True
    error = schema["components"]["schemas"]["ApiError"]
    assert set(error["required"]) == {"code", "message", "field_errors"}
    assert post["security"] == [{"bearerToken": []}]


def test_schema_needs_a_token_or_a_portal_login(client, django_user_model):
    assert_error(APIClient().get("/api/v1/schema/"), 401, "not_authenticated")
    client.force_login(django_user_model.objects.create_user("dev", password="x" * 20))
    assert client.get("/api/v1/schema/").status_code == 200


@pytest.mark.parametrize(("url", "asset"), [
    ("/api/v1/docs/", "vendor/swagger-ui/swagger-ui-bundle.js"),
    ("/api/v1/redoc/", "vendor/redoc/redoc.standalone.js"),
])
def test_docs_pages_use_vendored_assets_only(client, django_user_model, url, asset):
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(django_user_model.objects.create_user("dev", password="x" * 20))
    html = client.get(url).content.decode()
    assert f"/static/{asset}" in html and "/api/v1/schema/" in html
    assert not re.search(r"(src|href)=\"https?://", html), "no CDN"
    assert (Path(settings.BASE_DIR) / "static" / asset).stat().st_size > 100_000


def test_vendored_bundles_reference_no_missing_source_maps():
    """collectstatic's manifest storage fails on a sourceMappingURL to a file we did not vendor."""
    for folder in ("swagger-ui", "redoc"):
        for path in (Path(settings.BASE_DIR) / "static" / "vendor" / folder).iterdir():
            if path.suffix in (".js", ".css"):
                text = path.read_text(encoding="utf-8", errors="replace")
                for match in re.finditer(r"(?m)^(?://|/\*)# sourceMappingURL=(\S+?)(?:\s*\*/)?$", text):
                    assert (path.parent / match.group(1)).exists(), (path, match.group(1))
