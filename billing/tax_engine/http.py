"""HTTP adapter for an Avalara/Vertex-style tax service (the simulator speaks the same API).

    POST /v1/transactions/quote          {"code", "date", "currency", "seller": {"country", "region"},
                                          "ship_to": {"country", "region", "postal_code", "city"},
                                          "customer_code", "lines": [{"number", "amount"}]}
                                         200 {"total_tax", "taxes": [{"jurisdiction", "category", "rate",
                                              "base", "amount", "name"}]}; nothing is recorded
    POST /v1/transactions                the same body with "commit": true, on approval: records the sale
                                         under the invoice number (idempotent by code)
    POST /v1/transactions/<code>/void    {"reason"}: a credit note cancelled the invoice (idempotent)

Auth: `Authorization: Bearer BILLING_TAX_ENGINE_TOKEN`. Entities whose country is not in
`BILLING_TAX_ENGINE_COUNTRIES` keep the rule table (e.g. EU VAT stays in Billable).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from billing.tax_engine import TaxEngine, TaxEngineUnavailable
from billing.tax_engine.rule_table import RuleTableEngine
from kernel.money import ZERO, round_money

if TYPE_CHECKING:
    from billing.models import Contract, Invoice
    from billing.services.billing_engine import InvoiceDraft


class HttpTaxEngine(TaxEngine):
    name = "external tax engine"

    def __init__(self, *, base_url: str | None = None, token: str | None = None, timeout: float | None = None,
                 countries: list[str] | None = None) -> None:
        self.base_url = (base_url or settings.BILLING_TAX_ENGINE_URL).rstrip("/")
        self.token = settings.BILLING_TAX_ENGINE_TOKEN if token is None else token
        self.timeout = float(timeout if timeout is not None else settings.BILLING_TAX_ENGINE_TIMEOUT_S)
        self.countries = set(countries if countries is not None else settings.BILLING_TAX_ENGINE_COUNTRIES)
        self.fallback = RuleTableEngine()

    def handles(self, entity_country: str) -> bool:
        return entity_country in self.countries

    # --- HTTP ------------------------------------------------------------------------------------
    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = httpx.post(f"{self.base_url}{path}", json=payload, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TaxEngineUnavailable(f"The tax engine could not be reached: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            message = body.get("message") or response.text[:300]
            raise TaxEngineUnavailable(f"The tax engine answered HTTP {response.status_code}: {message}")
        return body

    @staticmethod
    def _document(*, code: str, day, currency: str, contract: Contract, amounts: list[Decimal]) -> dict[str, Any]:
        entity, client = contract.entity, contract.client
        return {
            "code": code,
            "date": day.isoformat(),
            "currency": currency,
            "seller": {"country": entity.country, "region": getattr(entity, "region", "")},
            "ship_to": {"country": client.country, "region": client.region, "postal_code": client.postal_code,
                        "city": client.city},
            "customer_code": client.code,
            "lines": [{"number": i, "amount": str(a)} for i, a in enumerate(amounts, start=1)],
        }

    # --- the interface ---------------------------------------------------------------------------
    def determine(self, draft: InvoiceDraft, contract: Contract) -> None:
        from billing.services.billing_engine import BLOCKING, Code, TaxDraft

        if not self.handles(contract.entity.country):
            return self.fallback.determine(draft, contract)
        code = f"quote-{contract.code}-{draft.period_start or draft.issue_date}"
        payload = self._document(code=code, day=draft.issue_date, currency=draft.currency, contract=contract,
                                 amounts=[line.amount for line in draft.lines])
        try:
            body = self._post("/v1/transactions/quote", payload)
            taxes = []
            for row in body.get("taxes", []):
                amount, base, rate = Decimal(str(row["amount"])), Decimal(str(row["base"])), Decimal(str(row["rate"]))
                if round_money(amount, draft.currency) != amount:
                    raise TaxEngineUnavailable(f"The tax engine answered {amount}, finer than {draft.currency}'s "
                                               "minor unit; Billable does not round it silently.")
                note = f"{row.get('name') or row.get('jurisdiction', '')} (tax engine)".strip()
                taxes.append(TaxDraft(str(row.get("category") or "S"), rate, base, amount, note))
        except (TaxEngineUnavailable, KeyError, TypeError, InvalidOperation) as exc:
            draft.taxes = []
            draft.tax_total = ZERO
            draft.total = draft.subtotal
            draft.add(Code.TAX_ENGINE_UNAVAILABLE, BLOCKING, f"No tax quote for {contract.client.code}: {exc}")
            return None
        draft.taxes = taxes
        draft.tax_total = sum((t.amount for t in taxes), ZERO)
        draft.total = draft.subtotal + draft.tax_total
        return None

    def records(self, invoice: Invoice) -> bool:
        return self.handles(invoice.entity.country) and bool(invoice.number)

    def commit(self, invoice: Invoice) -> None:
        if not self.records(invoice):
            return
        sign = -1 if invoice.kind == invoice.Kind.CREDIT_NOTE else 1  # a credit note's lines are positive
        payload = self._document(code=invoice.number, day=invoice.issue_date, currency=invoice.currency,
                                 contract=invoice.contract,
                                 amounts=[sign * abs(line.amount) for line in invoice.lines.all()])
        payload["commit"] = True
        payload["expected_total_tax"] = str(sign * abs(invoice.tax_total))
        self._post("/v1/transactions", payload)

    def void(self, invoice: Invoice, *, credit_note: Invoice) -> None:
        if not self.records(invoice):
            return
        self._post(f"/v1/transactions/{invoice.number}/void", {"reason": f"Credit note {credit_note.number}"})
