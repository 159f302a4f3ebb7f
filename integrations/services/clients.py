"""Integration clients: create (token shown once), revoke, and the scopes the API knows.

A token is `bk_<prefix>_<secret>`: the prefix finds the client, only the SHA-256 of the whole
token is stored, so a leaked database does not leak working tokens. Every client acts through
its own service user `api-<name>` (no usable password, not staff): history rows and transition
logs name that user, so an API change is audited like a person's.

Authority: scopes gate the API (which endpoints a client may call); the services behind the
endpoints check roles, like for people. So each *write* scope puts the service user into the
role group the services expect (`SCOPE_ROLES`); read scopes need no role (reads are selectors,
gated by the scope alone). A client gets no more authority than its scopes say.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.models import IdempotencyRecord, IntegrationClient
from kernel.audit import save_audited
from kernel.errors import ApplicationError, ConflictError
from kernel.roles import BILLING_ADMIN, FINANCE_ANALYST

TOKEN_PREFIX = "bk"  # noqa: S105 - the public marker of a token, not a secret

#: Every scope the API knows, with what it allows. Part of the API contract (docs/manual/api.md).
SCOPES: dict[str, str] = {
    "read:billing": "Read invoices, credit notes, payments, disputes, exceptions, billing runs and documents.",
    "write:billing": "Start billing runs.",
    "read:masterdata": "Read clients, contracts (rates, change orders), projects and people.",
    "write:masterdata": "Upsert clients, contracts (rates, change orders), projects, people and milestones.",
    "write:time": "Upsert time entries (single, bulk, CSV import).",
    "write:expenses": "Upsert expenses (single, bulk).",
    "read:kpis": "Read the process KPIs (days-to-invoice, DSO, exception rates, ...).",
    "read:revenue": "Read the revenue reconciliation of a period (recognised, billed, WIP, deferred, journals).",
    "write:disputes": "Open disputes on invoices.",
    "write:payments": "Record payments against invoices.",
    "webhooks:payments": "Send signed payment webhooks (uses the client's webhook secret).",
}

#: Role group the service user joins for a scope, so the services' role checks see its authority.
SCOPE_ROLES: dict[str, str] = {
    "write:billing": FINANCE_ANALYST,
    "write:disputes": FINANCE_ANALYST,
    "write:payments": FINANCE_ANALYST,
    "webhooks:payments": FINANCE_ANALYST,
    "write:masterdata": BILLING_ADMIN,
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,59}$")
_RATE = re.compile(r"^[1-9][0-9]{0,6}/(s|sec|second|m|min|minute|h|hour|d|day)$")
USERNAME_PREFIX = "api-"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed token, else None."""
    head, sep, rest = token.partition("_")
    if head != TOKEN_PREFIX or not sep:
        return None
    prefix, sep, secret = rest.partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


def _clean_scopes(scopes: Iterable[str]) -> list[str]:
    cleaned = sorted({s.strip() for s in scopes if s and s.strip()})
    unknown = [s for s in cleaned if s not in SCOPES]
    if unknown:
        raise ApplicationError(
            f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(SCOPES)}.",
            code="invalid_scope",
            field_errors={"scopes": [f"Unknown scope {s!r}." for s in unknown]},
        )
    if not cleaned:
        raise ApplicationError(
            "A client needs at least one scope.", code="invalid_scope", field_errors={"scopes": ["Required."]}
        )
    return cleaned


def _clean_rate(rate: str) -> str:
    rate = (rate or "").strip()
    if not _RATE.match(rate):
        raise ApplicationError(
            f"Invalid throttle rate {rate!r}; use requests per period, e.g. 1200/min, 50/s, 100000/day.",
            field_errors={"throttle_rate": ["Invalid rate."]},
        )
    return rate


def _new_token() -> tuple[str, str]:
    prefix = secrets.token_hex(6)  # 12 hex characters, no underscore
    return prefix, f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def _sync_groups(service_user: Any, scopes: Iterable[str]) -> None:
    wanted = {SCOPE_ROLES[s] for s in scopes if s in SCOPE_ROLES}
    groups = list(Group.objects.filter(name__in=wanted))
    service_user.groups.set(groups)


@transaction.atomic
def integration_client_create(
    *,
    name: str,
    scopes: Iterable[str],
    source: str = "",
    description: str = "",
    user: Any = None,
    throttle_rate: str | None = None,
) -> tuple[IntegrationClient, str, str]:
    """Create a client and its service user; returns (client, token, webhook secret), shown this once."""
    name = (name or "").strip().lower()
    if not _NAME.match(name):
        raise ApplicationError(
            "A client name is 2–60 lowercase letters, digits, '-' or '_' (e.g. psa, crm-hubspot).",
            field_errors={"name": ["Invalid name."]},
        )
    cleaned = _clean_scopes(scopes)
    if IntegrationClient.objects.filter(name=name).exists():
        raise ConflictError(f"An integration client named {name!r} exists already.", field_errors={"name": ["Taken."]})
    username = f"{USERNAME_PREFIX}{name}"
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise ConflictError(f"User {username!r} exists already; choose another client name.")
    service_user = User(username=username, is_staff=False, is_superuser=False, is_active=True)
    service_user.first_name = "API"
    service_user.last_name = name
    service_user.set_unusable_password()
    service_user.save()
    _sync_groups(service_user, cleaned)

    prefix, token = _new_token()
    webhook_secret = f"whsec_{secrets.token_urlsafe(32)}"
    client = IntegrationClient(
        name=name,
        description=description,
        source=source,
        scopes=cleaned,
        token_prefix=prefix,
        token_hash=hash_token(token),
        webhook_secret=webhook_secret,
        user=service_user,
    )
    if throttle_rate:
        client.throttle_rate = _clean_rate(throttle_rate)
    try:
        with transaction.atomic():
            save_audited(client, user=user, reason="Integration client created")
    except IntegrityError as exc:  # a concurrent create of the same name
        raise ConflictError(f"An integration client named {name!r} exists already.") from exc
    return client, token, webhook_secret


@transaction.atomic
def integration_client_update(
    *,
    name: str,
    user: Any = None,
    scopes: Iterable[str] | None = None,
    throttle_rate: str | None = None,
    source: str | None = None,
    description: str | None = None,
) -> IntegrationClient:
    """Change what a client may do (scopes, and so its service user's roles), its rate or source; token unchanged."""
    client = IntegrationClient.objects.select_for_update().select_related("user").filter(name=name).first()
    if client is None:
        raise ApplicationError(f"No integration client named {name!r}.", code="not_found")
    changed = []
    if scopes is not None:
        client.scopes = _clean_scopes(scopes)
        _sync_groups(client.user, client.scopes)
        changed.append("scopes")
    if throttle_rate is not None:
        client.throttle_rate = _clean_rate(throttle_rate)
        changed.append("throttle rate")
    if source is not None:
        client.source = source.strip()[:30]
        changed.append("source")
    if description is not None:
        client.description = description.strip()[:300]
        changed.append("description")
    if changed:
        save_audited(client, user=user, reason=f"Integration client changed: {', '.join(changed)}")
    return client


@transaction.atomic
def integration_client_revoke(*, name: str, user: Any = None) -> IntegrationClient:
    """Revoke a client's token at once (next request: 401) and deactivate its service user; kept for history."""
    client = IntegrationClient.objects.select_for_update().filter(name=name).first()
    if client is None:
        raise ApplicationError(f"No integration client named {name!r}.", code="not_found")
    if not client.is_active:
        return client
    client.is_active = False
    client.revoked_at = timezone.now()
    save_audited(client, user=user, reason="Integration client revoked")
    service_user = client.user
    service_user.is_active = False
    service_user.save(update_fields=["is_active"])
    return client


@transaction.atomic
def integration_client_rotate(*, name: str, user: Any = None) -> tuple[IntegrationClient, str]:
    """Issue a new token for an active client; the old one stops working at once."""
    client = IntegrationClient.objects.select_for_update().filter(name=name, is_active=True).first()
    if client is None:
        raise ApplicationError(f"No active integration client named {name!r}.", code="not_found")
    prefix, token = _new_token()
    client.token_prefix = prefix
    client.token_hash = hash_token(token)
    save_audited(client, user=user, reason="Integration client token rotated")
    return client, token


IDEMPOTENCY_KEEP_DAYS = 90


@transaction.atomic
def idempotency_records_purge(*, older_than_days: int = IDEMPOTENCY_KEEP_DAYS) -> int:
    """Forget idempotency keys older than N days (a retry after that runs again); returns how many.

    Callers retry within minutes or hours; 90 days outlives any sane retry policy while keeping
    the table small.
    """
    if older_than_days < 1:
        raise ApplicationError("Keep idempotency keys at least one day.", field_errors={"days": [">= 1"]})
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
