"""Webhook tests send many unauthenticated deliveries on purpose: the failure throttle (tested in
tests/controls/test_webhook_authenticity.py) is lifted here, and its counts start from zero."""
from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _no_failure_throttle(settings):
    settings.WEBHOOK_AUTH_FAILURES_PER_MINUTE = 10_000
    cache.clear()
    yield
    cache.clear()
