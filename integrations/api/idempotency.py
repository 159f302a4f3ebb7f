"""`Idempotency-Key` on POST: a retried request gets the first answer, never a second effect.

- same key + same request (method, path, body) → the stored response, with `Idempotent-Replayed: true`;
- same key + another request → 409 `idempotency_key_reused`;
- same key while the first request is still running → 409 `in_progress` (retry later);
- the record is written in the transaction of the business change: both commit or neither.
  Only 2xx answers are stored; an error rolls everything back, so the same key may be retried.

Concurrency uses a PostgreSQL transaction-level advisory lock on (client, key): the second
request does not wait for the first, it is told at once. Keys are unique per client, kept
for 90 days (`integration_client purge-keys`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re

from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone

from integrations.models import IdempotencyRecord
from kernel.errors import ApplicationError, ConflictError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces


def lock_key(client_id: int, key: str) -> int:
    """A signed 64-bit advisory-lock id for (client, key)."""
    digest = hashlib.sha256(f"idempotency:{client_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def request_digest(request) -> str:
    """SHA-256 of method, path (with query) and body; JSON bodies compared by content, not key order."""
    body = request._request.body  # read before DRF parses it; Django keeps a copy for the parser
    content_type = request.content_type or ""
    if content_type.startswith("application/json") and body:
        with contextlib.suppress(ValueError, UnicodeDecodeError):  # the parser refuses it; hash the raw bytes
            body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\n")
    digest.update(request.get_full_path().encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def _try_lock(client_id: int, key: str) -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite (demo) serialises writers anyway
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_key(client_id, key)])
        return bool(cursor.fetchone()[0])


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(
        bytes(record.response_body or b""),
        status=record.status_code,
        content_type=record.response_content_type or "application/json",
    )
    response[REPLAYED_HEADER] = "true"
    return response


class IdempotentPostMixin:
    """For DRF views: every POST needs an `Idempotency-Key` and runs in one transaction with its record.

    Set `idempotent = False` on a view whose POSTs carry their own natural id (signed webhooks
    with event ids) — and say why in its docstring.
    """

    idempotent = True

    def dispatch(self, request, *args, **kwargs):
        # DRF's APIView.dispatch, with the POST handler wrapped in `_idempotent_call`.
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            if request.method.lower() in self.http_method_names:
                handler = getattr(self, request.method.lower(), self.http_method_not_allowed)
            else:
                handler = self.http_method_not_allowed
            if request.method == "POST" and self.idempotent and handler != self.http_method_not_allowed:
                response = self._idempotent_call(handler, request, *args, **kwargs)
            else:
                response = handler(request, *args, **kwargs)
        except Exception as exc:  # DRF's contract: every exception to handle_exception
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def _idempotent_call(self, handler, request, *args, **kwargs):
        from integrations.api.permissions import integration_client

        client = integration_client(request)
        if client is None:  # views without token auth opt out with idempotent = False
            return handler(request, *args, **kwargs)
        key = request.headers.get(HEADER, "")
        if not key:
            raise ApplicationError(
                f"Send an {HEADER} header (a unique value per operation, e.g. a UUID) with every POST.",
                code="idempotency_key_missing",
                field_errors={HEADER: ["Required."]},
            )
        if not _KEY.match(key):
            raise ApplicationError(
                f"{HEADER} must be 1–255 printable ASCII characters without spaces.",
                code="idempotency_key_invalid",
                field_errors={HEADER: ["Invalid."]},
            )
        digest = request_digest(request)
        with transaction.atomic():
            if not _try_lock(client.pk, key):
                raise ConflictError(
                    f"A request with this {HEADER} is still being processed; retry later.", code="in_progress"
                )
            record = IdempotencyRecord.objects.filter(client=client, key=key).first()
            if record is not None:
                if record.request_sha256 != digest:
                    raise ConflictError(
                        f"This {HEADER} was used for another request (method, path or body differ); "
                        "use a new key for a new operation.",
                        code="idempotency_key_reused",
                    )
                if record.status_code is None:
                    raise ConflictError(f"A request with this {HEADER} is still being processed.", code="in_progress")
                return _replay(record)
            response = handler(request, *args, **kwargs)
            if not 200 <= response.status_code < 300:
                transaction.set_rollback(True)  # nothing stored, nothing changed: the key may be retried
                return response
            response = self.finalize_response(request, response, *args, **kwargs)
            response.render()
            IdempotencyRecord.objects.create(
                client=client,
                key=key,
                method=request.method,
                path=request.get_full_path()[:500],
                request_sha256=digest,
                status_code=response.status_code,
                response_body=bytes(response.content),
                response_content_type=response.get("Content-Type", "application/json")[:100],
                completed_at=timezone.now(),
            )
        return response
