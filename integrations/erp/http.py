"""The shipped ERP adapter: canonical JSON documents over HTTP(S) to the ERP or its middleware.

Endpoints, relative to `ERP_BASE_URL` (the simulator implements the same):

    POST /customers      POST /invoices      POST /credit-notes      POST /journals
        body: the canonical document; header `Idempotency-Key`; answer 200/201 {"id": "<erp id>"}
    GET  /documents?idempotency_key=K        GET /invoices/<number>
        answer 200 {"id": ...} when the ERP has it, 404 when not

Auth: `ERP_AUTH=bearer` sends `ERP_TOKEN`; `ERP_AUTH=oauth2` fetches a token with the
client-credentials grant from `ERP_OAUTH_TOKEN_URL` and caches it until shortly before it
expires (a 401 drops it and fetches a new one once).
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings

from integrations.erp.base import ErpAdapter, ErpError, ErpResult, Outcome

RETRYABLE_4XX = {408, 409, 425, 429}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def classify(response: httpx.Response) -> ErpError:
    """A non-2xx answer as the outbox sees it: 4xx permanent (but 408/409/425/429), 5xx retryable."""
    code = response.status_code
    text = response.text[:500]
    if 400 <= code < 500 and code not in RETRYABLE_4XX:
        return ErpError(f"ERP refused the document: HTTP {code} {text}", outcome=Outcome.PERMANENT, status_code=code)
    return ErpError(
        f"ERP answered HTTP {code} {text}", outcome=Outcome.RETRYABLE, status_code=code,
        retry_after=_retry_after(response) if code in (429, 503) else None,
    )


class HttpErpAdapter(ErpAdapter):
    def __init__(self, *, base_url: str | None = None, timeout: float | None = None, auth: str | None = None):
        self.base_url = (base_url or settings.ERP_BASE_URL).rstrip("/")
        self.timeout = float(timeout if timeout is not None else settings.ERP_TIMEOUT_S)
        self.auth = (auth or settings.ERP_AUTH or "none").lower()
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
            headers={"User-Agent": "Billable-ERP-outbox/1", "Accept": "application/json"},
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    # --- auth ---------------------------------------------------------------------------------------
    def _bearer(self) -> str | None:
        if self.auth == "bearer":
            return settings.ERP_TOKEN
        if self.auth != "oauth2":
            return None
        with self._token_lock:
            if self._token and time.monotonic() < self._token_expires:
                return self._token
            try:
                response = self.client.post(
                    settings.ERP_OAUTH_TOKEN_URL or f"{self.base_url}/oauth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": settings.ERP_OAUTH_CLIENT_ID,
                        "client_secret": settings.ERP_OAUTH_CLIENT_SECRET,
                        **({"scope": settings.ERP_OAUTH_SCOPE} if settings.ERP_OAUTH_SCOPE else {}),
                    },
                )
            except httpx.HTTPError as exc:  # nothing was posted yet: safe to retry
                raise ErpError(f"OAuth2 token request failed: {exc!r}", outcome=Outcome.RETRYABLE) from exc
            if response.status_code != 200:
                raise ErpError(
                    f"OAuth2 token request answered HTTP {response.status_code}",
                    outcome=Outcome.RETRYABLE if response.status_code >= 500 else Outcome.PERMANENT,
                    status_code=response.status_code,
                )
            body = response.json()
            self._token = body["access_token"]
            # Renew a little early, so a token never expires in flight.
            self._token_expires = time.monotonic() + max(0, float(body.get("expires_in", 300)) - 30)
            return self._token

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            from integrations.middleware import current_correlation_id

            if current_correlation_id():
                headers["X-Correlation-ID"] = current_correlation_id()
        except ImportError:  # pragma: no cover - the API part ships the middleware
            pass
        return headers

    def _request(self, method: str, path: str, *, key: str | None = None, json: Any = None) -> httpx.Response:
        for attempt in (1, 2):
            try:
                response = self.client.request(method, path, json=json, headers=self._headers(key))
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise ErpError(f"ERP not reachable: {exc!r}", outcome=Outcome.RETRYABLE) from exc
            except httpx.TransportError as exc:  # sent, but no (complete) answer: it may have been stored
                raise ErpError(f"No answer from the ERP: {exc!r}", outcome=Outcome.UNCLEAR) from exc
            if response.status_code == 401 and self.auth == "oauth2" and attempt == 1:
                self._token = None  # expired or revoked: one new token, one more try
                continue
            return response
        return response

    # --- the interface ------------------------------------------------------------------------------
    def _post(self, path: str, document: dict[str, Any], key: str) -> ErpResult:
        response = self._request("POST", path, key=key, json=document)
        if not response.is_success:
            raise classify(response)
        try:
            erp_id = str(response.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ErpError(
                f"ERP answered HTTP {response.status_code} without an id", outcome=Outcome.UNCLEAR,
                status_code=response.status_code,
            ) from exc
        return ErpResult(erp_id=erp_id, status_code=response.status_code,
                         replayed=response.headers.get("Idempotent-Replayed") == "true")

    def upsert_customer(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        return self._post("/customers", document, idempotency_key)

    def post_invoice(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        return self._post("/invoices", document, idempotency_key)

    def post_credit_note(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        return self._post("/credit-notes", document, idempotency_key)

    def post_journal(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        return self._post("/journals", document, idempotency_key)

    def invoice_status(self, *, idempotency_key: str = "", number: str = "") -> ErpResult | None:
        if idempotency_key:
            response = self._request("GET", f"/documents?idempotency_key={quote(idempotency_key, safe='')}")
        else:
            response = self._request("GET", f"/invoices/{quote(number, safe='')}")
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise classify(response)
        return ErpResult(erp_id=str(response.json()["id"]), status_code=response.status_code, replayed=True)
