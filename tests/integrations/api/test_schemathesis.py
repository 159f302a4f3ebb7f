"""Property-based tests of /api/v1/ against its own OpenAPI schema (schemathesis, bounded).

Every operation of the schema is called with generated input and a real token holding every
scope; each answer must not be a 5xx and must match what the schema promises (status code,
content type, headers, body). The WSGI app runs in the test's transaction (as Django's test
client does), on data with a posted invoice, a payment, a dispute, an exception and a run.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing.models import BillingRun, Invoice, Payment
from disputes.models import Dispute
from integrations.services.clients import SCOPES, integration_client_create
from tests.factories import BillingRunFactory, InvoiceExceptionFactory, UserFactory

from .factories import posted_invoice, with_payment_and_exception

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def wsgi_app():
    """Django's WSGI handler, keeping the test's connection (and transaction) across requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_ids(fuzz_token):
    """Path → a real id for the operations on one object."""
    invoice = Invoice.objects.filter(kind="invoice", disputes__isnull=True).first()
    return {
        "/api/v1/invoices/{id}/": invoice.pk,
        "/api/v1/invoices/{id}/pdf": invoice.pk,
        "/api/v1/invoices/{id}/ubl": invoice.pk,
        "/api/v1/invoices/{id}/disputes/": invoice.pk,
        "/api/v1/payments/{id}/": Payment.objects.first().pk,
        "/api/v1/disputes/{id}/": Dispute.objects.first().pk,
        "/api/v1/billing-runs/{id}/": BillingRun.objects.first().pk,
    }


@pytest.fixture
def fuzz_token(db):
    _client, token, _secret = integration_client_create(
        name="fuzzer", scopes=list(SCOPES), throttle_rate="100000/min"
    )
    invoice = with_payment_and_exception(posted_invoice())
    owner = UserFactory()
    Dispute.objects.create(
        invoice=posted_invoice(), category="rate", disputed_amount=Decimal("10.00"), currency="EUR", owner=owner,
        due_date=datetime.date(2025, 5, 1), opened_by=owner, opened_at=timezone.now(),
    )
    InvoiceExceptionFactory(invoice=invoice, code="CAP_EXCEEDED")
    BillingRunFactory()
    return token


@pytest.fixture
def api_schema(wsgi_app, fuzz_token):
    return schemathesis.openapi.from_wsgi(
        "/api/v1/schema/",
        wsgi_app,
        headers={"Authorization": f"Bearer {fuzz_token}", "Accept": "application/vnd.oai.openapi+json"},
    )


def _run(operation, strategy, token: str, max_examples: int) -> None:
    @given(case=strategy)
    @settings(
        max_examples=max_examples,
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

    check()


@pytest.mark.django_db
def test_api_answers_as_its_schema_says(api_schema, fuzz_token, fuzz_ids):
    """Positive and negative input for every operation; for operations on `{id}`, also a real id."""
    failures: dict[str, str] = {}
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        bulk = operation.path.endswith("/bulk/")  # up to 1,000 nested records a call: fewer, larger examples
        strategies = [
            (operation.as_strategy(GenerationMode.POSITIVE), 2 if bulk else 4),
            (operation.as_strategy(GenerationMode.NEGATIVE), 2 if bulk else 3),
        ]
        real_id = fuzz_ids.get(operation.path)
        if real_id is not None:
            strategies.append((operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"id": real_id}), 2))
        for strategy, examples in strategies:
            try:
                _run(operation, strategy, fuzz_token, examples)
            except Exception as exc:  # collect all operations' failures, report them together
                failures.setdefault(operation.label, f"{type(exc).__name__}: {exc}"[:3000])
    assert operations >= 15
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
