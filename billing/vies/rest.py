"""The VIES REST API (`POST {base}/check-vat-number`), as published by the European Commission.

    request  {"countryCode": "DE", "vatNumber": "136695976", "requesterMemberStateCode", "requesterNumber"}
    200      {"countryCode", "vatNumber", "requestDate": "2026-12-07T10:00:00.000Z", "valid": true,
              "requestIdentifier": "WAPIAAAA…", "name", "address"}
    error    {"actionSucceed": false, "errorWrappers": [{"error": "MS_UNAVAILABLE", "message": …}]}
             (MS_UNAVAILABLE, SERVICE_UNAVAILABLE, TIMEOUT, MS_MAX_CONCURRENT_REQ, GLOBAL_MAX_CONCURRENT_REQ …)

A requester VAT id (VIES_REQUESTER_VAT_ID, the entity's) makes VIES issue a consultation number.
"""

from __future__ import annotations

from datetime import date

import httpx
from django.conf import settings

from billing.vies import ViesAnswer, ViesUnavailable


class RestViesAdapter:
    def __init__(self, *, base_url: str | None = None, timeout: float | None = None) -> None:
        self.base_url = (base_url or settings.VIES_BASE_URL).rstrip("/")
        self.timeout = float(timeout if timeout is not None else settings.VIES_TIMEOUT_S)

    def check(self, vat_id: str, *, requester_vat_id: str = "") -> ViesAnswer:
        compact = vat_id.replace(" ", "").upper()
        country, number = compact[:2], compact[2:]
        payload = {"countryCode": "EL" if country == "GR" else country, "vatNumber": number}
        if requester_vat_id:
            payload |= {"requesterMemberStateCode": requester_vat_id[:2], "requesterNumber": requester_vat_id[2:]}
        try:
            response = httpx.post(f"{self.base_url}/check-vat-number", json=payload, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ViesUnavailable(f"VIES could not be reached: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        errors = body.get("errorWrappers") or []
        if response.status_code != 200 or body.get("actionSucceed") is False or "valid" not in body:
            error = errors[0].get("error") if errors else f"HTTP {response.status_code}"
            raise ViesUnavailable(f"VIES answered {error}")
        return ViesAnswer(
            valid=bool(body["valid"]),
            request_date=date.fromisoformat(str(body.get("requestDate", ""))[:10]),
            consultation_number=str(body.get("requestIdentifier") or ""),
            name=str(body.get("name") or "")[:300],
            address=str(body.get("address") or "").replace("\n", ", ")[:500],
        )
