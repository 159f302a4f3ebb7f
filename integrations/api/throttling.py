"""Per-client throttling: each integration client has its own rate (`IntegrationClient.throttle_rate`)."""

from __future__ import annotations

import logging

from rest_framework.throttling import SimpleRateThrottle

from integrations.api.permissions import integration_client

logger = logging.getLogger(__name__)
DEFAULT = "1200/min"


class IntegrationClientThrottle(SimpleRateThrottle):
    """A sliding window per client id; the rate comes from the client row (e.g. `1200/min`).

    The counts live in Django's cache: configure a shared cache (Redis) when several web
    processes serve the API, else each process counts on its own.
    """

    scope = "integration_client"

    def __init__(self):  # the rate is per client, read in allow_request
        self.rate = None
        self.num_requests = self.duration = None

    def get_cache_key(self, request, view) -> str | None:
        client = integration_client(request)
        return f"throttle:api:{client.pk}" if client is not None else None

    def allow_request(self, request, view) -> bool:
        client = integration_client(request)
        if client is None or not client.throttle_rate:
            return True
        try:
            self.num_requests, self.duration = self.parse_rate(client.throttle_rate)
            self.rate = client.throttle_rate
        except (ValueError, KeyError, IndexError):  # a rate mistyped outside the service: never a 500
            logger.warning("Invalid throttle rate %r of client %s; using %s", client.throttle_rate, client, DEFAULT)
            self.rate = DEFAULT
            self.num_requests, self.duration = self.parse_rate(DEFAULT)
        return super().allow_request(request, view)
