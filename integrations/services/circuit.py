"""Circuit breaker per outbound endpoint, shared by every worker through its `EndpointCircuit` row.

closed    calls go through; consecutive endpoint failures are counted
open      after `ERP_CIRCUIT_FAILURES` consecutive failures: no calls until `open_until` (the cool-down);
          deliveries are postponed to then, and this does not count as an attempt
half_open after the cool-down one worker's call goes through as the probe (the others stay postponed
          while it runs); its success closes the circuit, its failure opens it again

A rejected document (4xx) or a throttle (429) says the endpoint works: they do not count.
State changes happen under a row lock, in short transactions of their own (never around the call).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.models import EndpointCircuit

State = EndpointCircuit.State


@dataclass(frozen=True)
class Permit:
    allowed: bool
    retry_at: datetime.datetime | None = None  # when not allowed: when to try again
    probe: bool = False


def _probe_lease() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.ERP_TIMEOUT_S * 2 + 5)


def _locked(endpoint: str) -> EndpointCircuit:
    try:
        with transaction.atomic():
            EndpointCircuit.objects.get_or_create(endpoint=endpoint)
    except IntegrityError:
        pass  # created by another worker just now
    return EndpointCircuit.objects.select_for_update().get(endpoint=endpoint)


def circuit_permit(endpoint: str) -> Permit:
    """May a call to `endpoint` go out now? A closed circuit answers without a lock or a write."""
    state = EndpointCircuit.objects.filter(endpoint=endpoint).values_list("state", flat=True).first()
    if state in (None, State.CLOSED):
        return Permit(True)
    now = timezone.now()
    with transaction.atomic():
        circuit = _locked(endpoint)
        if circuit.state == State.CLOSED:
            return Permit(True)
        if circuit.open_until and circuit.open_until > now:
            return Permit(False, retry_at=circuit.open_until)
        # The cool-down is over (open), or the last probe's lease ran out (half-open): this call probes,
        # and holds the others off while it runs.
        circuit.state = State.HALF_OPEN
        circuit.open_until = now + _probe_lease()
        circuit.save(update_fields=["state", "open_until", "updated_at"])
        return Permit(True, probe=True)


def circuit_record_success(endpoint: str) -> None:
    """A call worked: close the circuit (writes only when it was not closed and clean already)."""
    dirty = EndpointCircuit.objects.filter(endpoint=endpoint).exclude(state=State.CLOSED, consecutive_failures=0)
    if not dirty.exists():
        return
    with transaction.atomic():
        circuit = _locked(endpoint)
        circuit.state = State.CLOSED
        circuit.consecutive_failures = 0
        circuit.opened_at = circuit.open_until = None
        circuit.save(update_fields=["state", "consecutive_failures", "opened_at", "open_until", "updated_at"])


def circuit_record_failure(endpoint: str, error: str) -> EndpointCircuit:
    """An endpoint failure: count it; open the circuit at the threshold, or again after a failed probe."""
    now = timezone.now()
    with transaction.atomic():
        circuit = _locked(endpoint)
        circuit.consecutive_failures += 1
        circuit.last_failure = error[:2000]
        if circuit.state == State.HALF_OPEN or circuit.consecutive_failures >= settings.ERP_CIRCUIT_FAILURES:
            if circuit.state != State.OPEN:
                circuit.opened_at = now
            circuit.state = State.OPEN
            circuit.open_until = now + datetime.timedelta(seconds=settings.ERP_CIRCUIT_COOLDOWN_S)
        circuit.save()
        return circuit
