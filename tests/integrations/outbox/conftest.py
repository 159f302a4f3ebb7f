"""Fixtures of the outbox tests: an ERP simulator on a free port, settings pointing at it, fast backoff."""

from __future__ import annotations

import pytest

from integrations.simulator import ErpSimulator


@pytest.fixture
def erp():
    simulator = ErpSimulator("127.0.0.1", 0, seed=7, retry_after_s=2, timeout_sleep_s=1.5).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def erp_settings(settings, erp):
    settings.ERP_POSTING_ENABLED = True
    settings.ERP_BASE_URL = erp.url
    settings.ERP_AUTH = "none"
    settings.ERP_TIMEOUT_S = 0.5
    settings.OUTBOX_MAX_ATTEMPTS = 3
    settings.OUTBOX_BACKOFF_BASE_S = 0.01
    settings.OUTBOX_BACKOFF_CAP_S = 0.05
    settings.OUTBOX_LEASE_S = 5
    settings.OUTBOX_ENQUEUE_ON_COMMIT = False
    settings.ERP_CIRCUIT_FAILURES = 3
    settings.ERP_CIRCUIT_COOLDOWN_S = 30
    return settings
