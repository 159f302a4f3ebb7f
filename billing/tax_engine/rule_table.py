"""The built-in engine: the most specific active tax rule (billing.services.pricing.TaxRuleResolver)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from billing.services.pricing import TaxRuleResolver
from billing.tax_engine import TaxEngine
from kernel.money import HUNDRED, ZERO, round_money

if TYPE_CHECKING:
    from billing.models import Contract
    from billing.services.billing_engine import InvoiceDraft


class RuleTableEngine(TaxEngine):
    name = "rule table"

    def __init__(self, resolver: TaxRuleResolver | None = None) -> None:
        self._resolver = resolver

    @property
    def resolver(self) -> TaxRuleResolver:
        """The rules, read at the first lookup: an approval asks only `records` (no rules) of a fresh engine."""
        if self._resolver is None:
            self._resolver = TaxRuleResolver()
        return self._resolver

    def find(self, **kwargs):  # the resolver's API, for callers that only need the rule
        return self.resolver.find(**kwargs)

    def determine(self, draft: InvoiceDraft, contract: Contract) -> None:
        from billing.services.billing_engine import BLOCKING, Code, TaxDraft

        rule = self.resolver.find(entity_country=contract.entity.country, client=contract.client)
        if rule is None:
            draft.add(
                Code.TAX_RULE_MISSING,
                BLOCKING,
                f"No tax rule for entity country {contract.entity.country} and client country "
                f"{contract.client.country}.",
            )
            draft.tax_total = ZERO
        else:
            amount = round_money(draft.subtotal * rule.rate / HUNDRED, draft.currency)
            draft.taxes = [TaxDraft(rule.category, rule.rate, draft.subtotal, amount, rule.legal_note)]
            draft.tax_total = amount
        draft.total = draft.subtotal + draft.tax_total
