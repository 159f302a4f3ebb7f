"""The shipped access-point adapter: a provider's REST API (the simulator speaks the same).

    POST /transmissions          body {"sender", "receiver", "document_type", "document" (base64 UBL)},
                                 header Idempotency-Key; 202 {"id", "status": "accepted"};
                                 422 {"status": "rejected", "errors": [{"code", "text"}]} when refused
    GET  /transmissions/<id>     200 {"id", "status", "errors"}

Auth: `Authorization: Bearer PEPPOL_AP_TOKEN`.
"""

from __future__ import annotations

import base64

import httpx
from django.conf import settings

from billing.access_point import AccessPointError, PeppolError, Transmission


class HttpAccessPointAdapter:
    def __init__(self, *, base_url: str | None = None, token: str | None = None, timeout: float | None = None):
        self.base_url = (base_url or settings.PEPPOL_AP_BASE_URL).rstrip("/")
        self.token = settings.PEPPOL_AP_TOKEN if token is None else token
        self.timeout = float(timeout if timeout is not None else settings.PEPPOL_AP_TIMEOUT_S)

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = {"Accept": "application/json", **extra}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return httpx.request(method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise AccessPointError(f"The Peppol access point could not be reached: {type(exc).__name__}: {exc}",
                                   retryable=True) from exc

    @staticmethod
    def _transmission(response: httpx.Response) -> Transmission:
        try:
            body = response.json()
        except ValueError:
            body = {}
        errors = PeppolError.parse(body.get("errors"))
        if response.status_code in (200, 201, 202) and body.get("id"):
            return Transmission(id=str(body["id"]), status=str(body.get("status", "accepted")), errors=errors)
        if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 408, 429):
            codes = ", ".join(e.code for e in errors) or f"HTTP {response.status_code}"
            raise AccessPointError(f"The Peppol access point refused the document: {codes}", errors=errors)
        raise AccessPointError(f"The Peppol access point answered HTTP {response.status_code}: "
                               f"{response.text[:300]}", retryable=True)

    def send(self, *, document: bytes, sender: str, receiver: str, document_type: str,
             idempotency_key: str) -> Transmission:
        payload = {"sender": sender, "receiver": receiver, "document_type": document_type,
                   "document": base64.b64encode(document).decode("ascii")}
        response = self._call("POST", "/transmissions", json=payload,
                              headers=self._headers(**{"Idempotency-Key": idempotency_key}))
        return self._transmission(response)

    def status(self, transmission_id: str) -> Transmission:
        return self._transmission(self._call("GET", f"/transmissions/{transmission_id}", headers=self._headers()))
