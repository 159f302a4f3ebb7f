"""Per-client throttling: each integration client has its own rate (`IntegrationClient.throttle_rate`)."""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from integrations.api.permissions import integration_client


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
        self.rate = client.throttle_rate
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)
