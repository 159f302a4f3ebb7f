"""Payment read-back: cash the ERP recorded against Billable's invoices comes back into Billable (ADR 0075).

`erp_payments_pull` asks the ERP adapter for the payments it reconciled against Billable's open,
ERP-posted invoices and records each through `payment_record` — the one door for cash — so the invoice
moves to `partially_paid` / `paid`, aging and DSO see it and dunning stops. Idempotent by the ERP's
payment id (the payment's external reference, `tryton-line-<id>` for Tryton): a pull repeated, or run
by two workers at once, records each payment once.

The ERP's payments are recorded as the service user of an integration client (`ERP_PAYMENTS_CLIENT`,
scope `write:payments`), created on the first pull if missing: its history rows and transition logs
name it, like any integration's. Revoking that client stops the read-back (the payment service
refuses it).

With the read-back on, the ERP is the system of record for received cash: a payment also entered in
Billable (the payment webhook, finance) would arrive twice — the second becomes an OVERPAYMENT exception
in finance's queue, never a silent double.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from billing.models import Invoice, Payment
from integrations.erp.base import ErpError, get_adapter
from integrations.models import IntegrationClient

logger = logging.getLogger(__name__)

#: Invoices whose cash can still arrive (credit notes are not paid in).
OPEN = (Invoice.Status.POSTED, Invoice.Status.SENT, Invoice.Status.PARTIALLY_PAID, Invoice.Status.DISPUTED)
BATCH = 200


@dataclass
class PullResult:
    invoices: int = 0
    seen: int = 0
    recorded: int = 0
    errors: list[str] = field(default_factory=list)


def erp_payments_user() -> Any:
    """The service user the ERP's payments are recorded as (its integration client created when missing)."""
    name = settings.ERP_PAYMENTS_CLIENT
    client = IntegrationClient.objects.filter(name=name).select_related("user").first()
    if client is None:
        from integrations.services.clients import integration_client_create

        client, _token, _secret = integration_client_create(
            name=name, scopes=["write:payments"], source="erp",
            description="Payments read back from the ERP (no API token is used).",
        )
    return client.user


def erp_payments_pull(*, invoices: list[Invoice] | None = None) -> PullResult:
    """Record the payments the ERP holds for open, ERP-posted invoices (or the ones given); safe to repeat."""
    from billing.services.payments import payment_record

    result = PullResult()
    user = erp_payments_user()
    queryset = Invoice.objects.filter(kind=Invoice.Kind.INVOICE, status__in=OPEN).exclude(erp_id="")
    if invoices is not None:
        queryset = queryset.filter(pk__in=[i.pk for i in invoices])
    adapter = get_adapter()
    rows = list(queryset.order_by("pk").values_list("pk", "erp_id"))
    result.invoices = len(rows)
    for start in range(0, len(rows), BATCH):
        chunk = dict((erp_id, pk) for pk, erp_id in rows[start:start + BATCH])
        try:
            payments = adapter.invoice_payments(list(chunk))
        except ErpError as error:
            result.errors.append(error.message)
            logger.warning("erp payments: read-back failed: %s", error.message)
            continue
        known = set(Payment.objects.filter(external_reference__in=[p.payment_id for p in payments])
                    .values_list("external_reference", flat=True))
        for payment in payments:
            result.seen += 1
            if payment.payment_id in known or payment.invoice_erp_id not in chunk:
                continue
            invoice = Invoice.objects.get(pk=chunk[payment.invoice_erp_id])
            try:
                payment_record(
                    amount=payment.amount, currency=payment.currency, date=payment.date,
                    external_reference=payment.payment_id, source=Payment.Source.API, user=user,
                    invoice=invoice, note=f"Read back from the ERP (invoice {payment.invoice_erp_id}).",
                )
            except Exception as exc:  # one bad row must not stop the others; it is logged and reported
                logger.exception("erp payments: could not record %s", payment.payment_id)
                result.errors.append(f"{payment.payment_id}: {exc}")
                continue
            result.recorded += 1
    if result.recorded or result.errors:
        logger.info("erp payments: %s recorded of %s seen on %s invoices; %s errors",
                    result.recorded, result.seen, result.invoices, len(result.errors))
    return result
