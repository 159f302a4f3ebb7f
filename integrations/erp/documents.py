"""Canonical JSON documents published to the ERP (docs/rules/integrations.md).

One shape per document kind, independent of any ERP: the middleware (iPaaS) maps
it to its ERP. The document is built once, when the outbox message is written, and
frozen in `OutboxMessage.payload`: a retry sends exactly what was approved. Money is
a decimal string with the currency beside it (never a float), dates ISO 8601.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from billing.models import Client, Invoice, LegalEntity

SCHEMA_VERSION = "billable.erp/1"


def _money(value: Any) -> str:
    return f"{value:.2f}" if value is not None else "0.00"


def entity_party(entity: LegalEntity) -> dict[str, Any]:
    """The issuing company (seller)."""
    return {
        "code": entity.code,
        "name": entity.name,
        "vat_id": entity.vat_id,
        "country": entity.country,
        "address": {"line1": entity.address_line1, "city": entity.city, "postal_code": entity.postal_code},
        "currency": entity.currency,
    }


def customer_party(client: Client) -> dict[str, Any]:
    """The customer (buyer), as the ERP's customer master needs it."""
    return {
        "code": client.code,
        "name": client.legal_name,
        "vat_id": client.vat_id,
        "vat_id_valid": client.has_valid_vat_id,
        "country": client.country,
        "address": {
            "line1": client.address_line1,
            "line2": client.address_line2,
            "city": client.city,
            "postal_code": client.postal_code,
        },
        "currency": client.currency,
        "payment_terms_days": client.payment_terms_days,
        "billing_emails": client.billing_email_list,
        "crm_id": client.external_id,
        "erp_id": client.erp_id,
    }


def customer_document(client: Client) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "type": "customer", "customer": customer_party(client)}


def document_fingerprint(document: dict[str, Any]) -> str:
    """A short, stable hash of a document: a changed customer gets a new idempotency key, an unchanged one not."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def invoice_document(invoice: Invoice) -> dict[str, Any]:
    """The numbered invoice or credit note: parties, dates, currency, lines, taxes, totals, what it credits."""
    if not invoice.number:
        raise ValueError("Only numbered invoices are published to the ERP.")
    entity, client, contract = invoice.entity, invoice.client, invoice.contract
    lines = [
        {
            "position": line.position,
            "kind": line.kind,
            "description": line.description,
            "project": line.project.code if line.project_id else None,
            "role": line.role.code if line.role_id else None,
            "quantity": f"{line.quantity:.2f}",
            "unit_price": f"{line.unit_price:.4f}",
            "amount": _money(line.amount),
        }
        for line in invoice.lines.select_related("project", "role").order_by("position", "id")
    ]
    taxes = [
        {
            "category": tax.category,
            "rate": f"{tax.rate:.2f}",
            "base": _money(tax.base),
            "amount": _money(tax.amount),
            "legal_note": tax.legal_note,
        }
        for tax in invoice.taxes.order_by("category", "rate")
    ]
    credit_of = invoice.credit_of
    return {
        "schema": SCHEMA_VERSION,
        "type": "credit_note" if invoice.kind == Invoice.Kind.CREDIT_NOTE else "invoice",
        "number": invoice.number,
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "period": {
            "start": invoice.period_start.isoformat() if invoice.period_start else None,
            "end": invoice.period_end.isoformat() if invoice.period_end else None,
        },
        "currency": invoice.currency,
        "seller": entity_party(entity),
        "buyer": customer_party(client),
        "contract": {"code": contract.code, "po_number": invoice.po_number},
        "project": invoice.project.code if invoice.project_id else None,
        "lines": lines,
        "taxes": taxes,
        "totals": {
            "subtotal": _money(invoice.subtotal),
            "tax": _money(invoice.tax_total),
            "total": _money(invoice.total),
        },
        "credit_of": credit_of.number if credit_of is not None else None,
        "billable_id": invoice.pk,
    }
