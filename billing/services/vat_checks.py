"""VIES checks of clients' VAT ids (docs/rules/vat-checks.md, ADR 0077).

A billing run and a revalidation call `attach_vat_checks` before pricing: a client whose last definitive
check of its current VAT id is older than `VIES_MAX_AGE_DAYS` (or missing) is checked again; the answer is
stored as a `VatCheck` row. The engine then reads `client.vies_check`: invalid → blocking
`CLIENT_MASTER_DATA_INVALID` with VIES's answer; VIES unavailable → the warning `VAT_CHECK_UNAVAILABLE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import Client, VatCheck
from billing.vat import EU_MEMBER_STATES
from billing.vies import ViesUnavailable, get_vies_adapter
from kernel.errors import ApplicationError


def _vat_id(client: Client) -> str:
    return client.vat_id.replace(" ", "").upper()


def needs_vies(client: Client) -> bool:
    return bool(client.vat_id.strip()) and client.country in EU_MEMBER_STATES


def latest_vat_check(client: Client) -> VatCheck | None:
    """The newest definitive (valid/invalid) check of the client's current VAT id, however old."""
    return (
        VatCheck.objects.filter(client=client, vat_id=_vat_id(client))
        .exclude(result=VatCheck.Result.UNAVAILABLE)
        .order_by("-checked_at", "-id")
        .first()
    )


def is_fresh(check: VatCheck | None) -> bool:
    return check is not None and check.checked_at >= timezone.now() - timedelta(days=settings.VIES_MAX_AGE_DAYS)


@transaction.atomic
def vat_check_run(*, client: Client, user: Any = None, requester_vat_id: str = "") -> VatCheck:
    """Ask VIES about the client's VAT id now and keep the answer (an outage is kept too, as such)."""
    adapter = get_vies_adapter()
    if adapter is None:
        raise ApplicationError("VIES checks are not configured (VIES_ADAPTER).", code="vies_not_configured")
    if not needs_vies(client):
        raise ApplicationError(f"Client {client.code} has no EU VAT id to check.", code="nothing_to_check")
    vat_id = _vat_id(client)
    requester = requester_vat_id or getattr(settings, "VIES_REQUESTER_VAT_ID", "")
    row = VatCheck(client=client, vat_id=vat_id, checked_at=timezone.now(),
                   checked_by=user if getattr(user, "pk", None) else None)
    try:
        answer = adapter.check(vat_id, requester_vat_id=requester)
    except ViesUnavailable as exc:
        row.result, row.message = VatCheck.Result.UNAVAILABLE, str(exc)[:500]
    else:
        row.result = VatCheck.Result.VALID if answer.valid else VatCheck.Result.INVALID
        row.request_date, row.consultation_number = answer.request_date, answer.consultation_number
        row.name, row.address = answer.name, answer.address
    row.save()
    _cache_on_client(client, row, user=user)
    return row


def _cache_on_client(client: Client, row: VatCheck, *, user: Any) -> None:
    """Keep the last answer on the client (its history shows every check that changed something)."""
    from kernel.audit import save_audited

    locked = Client.objects.select_for_update().get(pk=client.pk)
    locked.vies_result, locked.vies_checked_at = row.result, row.checked_at
    if row.result != VatCheck.Result.UNAVAILABLE:
        locked.vies_consultation_number = row.consultation_number
    save_audited(locked, user=user, reason=f"VIES check: {row.answer}"[:100],
                 update_fields=["vies_result", "vies_checked_at", "vies_consultation_number", "updated_at"])
    client.vies_result, client.vies_checked_at = locked.vies_result, locked.vies_checked_at
    client.vies_consultation_number = locked.vies_consultation_number


def vat_check_before_invoicing(client: Client, *, requester_vat_id: str = "") -> VatCheck | None:
    """The check that counts for invoicing now: a fresh stored one, else a new one (None: no check applies)."""
    if get_vies_adapter() is None or not needs_vies(client):
        return None
    stored = latest_vat_check(client)
    if is_fresh(stored):
        return stored
    return vat_check_run(client=client, requester_vat_id=requester_vat_id)


def attach_vat_checks(contracts: Iterable[Any]) -> None:
    """Set `client.vies_check` on each contract's client (once per client) for the billing engine."""
    done: dict[int, VatCheck | None] = {}
    for contract in contracts:
        client = contract.client
        if client.pk not in done:
            done[client.pk] = vat_check_before_invoicing(client, requester_vat_id=contract.entity.vat_id or "")
        client.vies_check = done[client.pk]
