"""Billable documents of the demo's three entities, approved and numbered, for posting to Tryton.

Numbers are unique for the whole test session (the session shares one Tryton database while each test's
Billable data is rolled back), so a look-up by number never finds another test's invoice.
"""

from __future__ import annotations

import datetime
import itertools
import os
from decimal import ROUND_HALF_UP, Decimal

from billing.demo import ENTITIES
from billing.models import Client, Invoice, InvoiceLine, InvoiceTax, LegalEntity
from tests.factories import ClientFactory, ContractFactory
from tests.integrations.tryton.conftest import map_demo_entities

ISSUE = datetime.date(2026, 10, 31)
CENT = Decimal("0.01")
_numbers = itertools.count(1)
_RUN = f"{os.getpid() % 10000:04d}"

# Clients of each entity: (country, VAT id, VAT valid?, tax category, rate)
CLIENTS = {
    "NWB": [("DE", "DE274158609", "S", "19.00"), ("FR", "FR40303265045", "AE", "0.00"),
            ("CH", "", "O", "0.00")],
    "TLL": [("GB", "GB980780684", "S", "20.00"), ("US", "", "O", "0.00")],
    "HUD": [("US", "", "O", "0.00")],
}


def demo_entities() -> dict[str, LegalEntity]:
    """The demo's NWB (DE, EUR), TLL (GB, GBP) and HUD (US, USD), with their Tryton mappings."""
    entities = {}
    for spec in ENTITIES:
        entity, _ = LegalEntity.objects.update_or_create(code=spec["code"], defaults={
            k: v for k, v in spec.items() if k != "code"})
        entities[entity.code] = entity
    map_demo_entities(entities.values())
    return entities


def client_of(entity: LegalEntity, variant: int = 0) -> tuple[Client, str, str]:
    """A client of the entity (the `variant`-th kind), with the tax category and rate its invoices carry."""
    country, vat_id, category, rate = CLIENTS[entity.code][variant % len(CLIENTS[entity.code])]
    client = ClientFactory(
        code=f"T{entity.code}{variant}", legal_name=f"{entity.code} customer {variant} ({country})", country=country,
        vat_id=vat_id, currency=entity.currency, address_line1=f"{variant + 1} Market Street", city="Testville",
        postal_code=f"{10000 + variant}",
    )
    return client, category, rate


def _half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def approved_document(entity: LegalEntity, client: Client, *, category: str, rate: str,
                      lines: list[tuple[str, str, str]], kind: str = Invoice.Kind.INVOICE,
                      credit_of: Invoice | None = None, issue: datetime.date = ISSUE) -> Invoice:
    """One approved, numbered invoice or credit note; lines are (description, quantity, unit price)."""
    contract = ContractFactory(code=f"TC-{entity.code}-{client.code}", entity=entity, client=client,
                               currency=entity.currency)
    amounts = [(d, Decimal(q), Decimal(p), _half_up(Decimal(q) * Decimal(p))) for d, q, p in lines]
    subtotal = sum((a for *_, a in amounts), Decimal(0))
    tax = _half_up(subtotal * Decimal(rate) / 100)
    invoice = Invoice.objects.create(
        kind=kind, credit_of=credit_of, entity=entity, client=client, contract=contract, currency=entity.currency,
        period_start=issue.replace(day=1), period_end=issue, issue_date=issue,
        due_date=issue + datetime.timedelta(days=30), po_number=contract.po_number,
        subtotal=subtotal, tax_total=tax, total=subtotal + tax,
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(invoice=invoice, position=i, kind=InvoiceLine.Kind.TIME if q != 1 else InvoiceLine.Kind.EXPENSE,
                    description=d, quantity=q, unit_price=p, amount=a)
        for i, (d, q, p, a) in enumerate(amounts, start=1)
    )
    InvoiceTax.objects.create(invoice=invoice, category=category, rate=Decimal(rate), base=subtotal, amount=tax,
                              legal_note="Reverse charge" if category == "AE" else "")
    series = "CN" if kind == Invoice.Kind.CREDIT_NOTE else "IN"
    number = f"{entity.invoice_prefix}-{series}{_RUN}-{next(_numbers):05d}"
    Invoice.objects.filter(pk=invoice.pk).update(number=number, status=Invoice.Status.APPROVED)
    return Invoice.objects.select_related("client", "entity", "contract").get(pk=invoice.pk)
