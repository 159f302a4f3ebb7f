"""Demo data of the integrations (called by `seed_demo` after the billing blocks; idempotent).

- the every-minute outbox sweep schedule (the migration makes it; a flushed database gets it back);
- an `erp-middleware` integration client (reads billing and master data, sends payment webhooks),
  whose token and webhook secret are printed once, when it is made;
- the inbound-sync demo (`integrations.demo_sync.seed_demo_sync`: a checked PSA time export).

The demo runs with ERP posting on against the ERP simulator (`make demo` starts it on
127.0.0.1:8765): approving an invoice queues its document, the worker posts it, the invoice
moves to `posted` with the simulator's id. The integration monitor shows the outbox.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

DEMO_CLIENT = "erp-middleware"
DEMO_SCOPES = ("read:billing", "read:masterdata", "webhooks:payments")


def seed_demo_extension(*, scale: int, seed: int, log: Callable[[str], None] = print) -> Counter:
    from django_q.models import Schedule

    from integrations.models import IntegrationClient
    from integrations.schedules import PAYMENTS_FUNC, SWEEP_FUNC, schedule_erp_payments, schedule_outbox_sweep

    made: Counter = Counter()
    if not Schedule.objects.filter(func=SWEEP_FUNC).exists():
        schedule_outbox_sweep(Schedule)
    if not Schedule.objects.filter(func=PAYMENTS_FUNC).exists():
        schedule_erp_payments(Schedule)
        made["outbox sweep schedule"] += 1
    if not IntegrationClient.objects.filter(name=DEMO_CLIENT).exists():
        try:
            from integrations.services.clients import integration_client_create
        except ImportError:  # the API part is not installed: no client to make
            integration_client_create = None
        if integration_client_create is not None:
            client, token, secret = integration_client_create(
                name=DEMO_CLIENT, scopes=DEMO_SCOPES, source="erp",
                description="Demo: the ERP middleware (iPaaS) reading invoices and sending payment webhooks.",
            )
            made["integration clients"] += 1
            log(f"Integration client {client.name}: API token {token} (shown once), webhook secret {secret}")
    try:
        from integrations.demo_sync import seed_demo_sync
    except ImportError:
        return made
    made.update(seed_demo_sync(log=log) or {})
    return made
