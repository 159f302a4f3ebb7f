"""Price look-ups of the billing engine: rates (docs/rules/billing.md §3), FX (§3.4) and tax rules (§3.9).

Each resolver loads what a billing run needs in a few queries up front, then
answers from memory, so a run's query count does not grow with its items.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from billing.models import Client, Contract, ContractRate, FxRate, InvoiceLine, RateCardLine, TaxRule
from billing.vat import EU_MEMBER_STATES


@dataclass(frozen=True)
class ResolvedRate:
    rate: Decimal
    source: str  # InvoiceLine.RateSource value
    source_id: int
    label: str


def _covers(effective_from: date, effective_to: date | None, day: date) -> bool:
    return effective_from <= day and (effective_to is None or effective_to >= day)


class RateResolver:
    """Person override → role override → rate card, each "effective at D" (§3.3, §3.12)."""

    def __init__(self, contracts: Iterable[Contract]):
        contracts = list(contracts)
        self._contracts = {c.id: c for c in contracts}
        self._person_rates: dict[tuple[int, int], list[ContractRate]] = defaultdict(list)
        self._role_rates: dict[tuple[int, int], list[ContractRate]] = defaultdict(list)
        rates = ContractRate.objects.filter(contract_id__in=self._contracts).select_related("change_order")
        for rate in rates:
            # Rates of change orders that were not approved never apply.
            if rate.change_order_id and rate.change_order.status != "approved":
                continue
            if rate.person_id:
                self._person_rates[(rate.contract_id, rate.person_id)].append(rate)
            else:
                self._role_rates[(rate.contract_id, rate.role_id)].append(rate)
        card_ids = {c.rate_card_id for c in contracts if c.rate_card_id}
        self._card_lines: dict[tuple[int, int], list[RateCardLine]] = defaultdict(list)
        self._card_currency: dict[int, str] = {}
        for line in RateCardLine.objects.filter(rate_card_id__in=card_ids).select_related("rate_card"):
            self._card_lines[(line.rate_card_id, line.role_id)].append(line)
            self._card_currency[line.rate_card_id] = line.rate_card.currency
        # Per (contract, person with overrides or None, role): the days on which a rate starts or ends
        # to apply, and the answer for each span between them (`resolve`).
        self._spans: dict[tuple[int, int | None, int], tuple[list[date], dict[int, ResolvedRate | None]]] = {}

    @staticmethod
    def _latest_override(rates: list[ContractRate], day: date) -> ContractRate | None:
        covering = [r for r in rates if _covers(r.effective_from, r.effective_to, day)]
        if not covering:
            return None
        # Latest start wins; on a tie a change-order rate beats the contract's own.
        return max(covering, key=lambda r: (r.effective_from, r.change_order_id is not None, r.id))

    def resolve(self, *, contract_id: int, person_id: int, role_id: int, day: date) -> ResolvedRate | None:
        """The rate of a day's work, answered once per span of days over which no candidate rate starts or ends.

        Between two consecutive boundaries (a rate's `effective_from`, the day after its `effective_to`)
        the rates covering a day are the same, so is the answer: a month of entries costs one
        resolution per contract, role (and person with overrides) and rate change, not one per day.
        """
        person_key = person_id if (contract_id, person_id) in self._person_rates else None
        key = (contract_id, person_key, role_id)
        spans = self._spans.get(key)
        if spans is None:
            spans = self._spans[key] = (self._boundaries(contract_id, person_key, role_id), {})
        boundaries, answers = spans
        span = bisect.bisect_right(boundaries, day)
        if span not in answers:
            answers[span] = self._resolve(contract_id, person_id, role_id, day)
        return answers[span]

    def _boundaries(self, contract_id: int, person_id: int | None, role_id: int) -> list[date]:
        """Sorted days on which one of the rates `_resolve` looks at for this key starts or stops covering."""
        contract = self._contracts[contract_id]
        candidates = [
            *(self._person_rates.get((contract_id, person_id), []) if person_id is not None else []),
            *self._role_rates.get((contract_id, role_id), []),
            *self._card_lines.get((contract.rate_card_id, role_id), []),
        ]
        days = {r.effective_from for r in candidates}
        days.update(
            r.effective_to + timedelta(days=1) for r in candidates if r.effective_to and r.effective_to < date.max
        )
        return sorted(days)

    def _resolve(self, contract_id: int, person_id: int, role_id: int, day: date) -> ResolvedRate | None:
        for rates, what in (
            (self._person_rates.get((contract_id, person_id), []), "person"),
            (self._role_rates.get((contract_id, role_id), []), "role"),
        ):
            override = self._latest_override(rates, day)
            if override is not None:
                if override.change_order_id:
                    return ResolvedRate(
                        override.rate,
                        InvoiceLine.RateSource.CHANGE_ORDER,
                        override.id,
                        f"Change order {override.change_order.code}: {what} rate from {override.effective_from}",
                    )
                return ResolvedRate(
                    override.rate,
                    InvoiceLine.RateSource.CONTRACT_OVERRIDE,
                    override.id,
                    f"Contract {what} override from {override.effective_from}",
                )
        contract = self._contracts[contract_id]
        card_id = contract.rate_card_id
        if card_id is None or self._card_currency.get(card_id, contract.currency) != contract.currency:
            return None  # a rate card in another currency is not used (§3.12)
        covering = [
            line
            for line in self._card_lines.get((card_id, role_id), [])
            if _covers(line.effective_from, line.effective_to, day)
        ]
        if not covering:
            return None
        line = max(covering, key=lambda r: (r.effective_from, r.id))
        return ResolvedRate(
            line.rate,
            InvoiceLine.RateSource.RATE_CARD,
            line.id,
            f"Rate card {line.rate_card.code} from {line.effective_from}",
        )


class FxResolver:
    """Direct pair only, rate dated on the day or the latest earlier one (§3.4, §3.12)."""

    def __init__(self, pairs: Iterable[tuple[str, str]], up_to: date):
        pairs = set(pairs)
        self._dates: dict[tuple[str, str], list[date]] = defaultdict(list)
        self._rates: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
        if not pairs:
            return
        from django.db.models import Q

        condition = Q()
        for from_currency, to_currency in pairs:
            condition |= Q(from_currency=from_currency, to_currency=to_currency)
        for fx in FxRate.objects.filter(condition, date__lte=up_to).order_by("date"):
            key = (fx.from_currency, fx.to_currency)
            self._dates[key].append(fx.date)
            self._rates[key].append(fx.rate)

    def rate(self, from_currency: str, to_currency: str, day: date) -> Decimal | None:
        if from_currency == to_currency:
            return Decimal(1)
        key = (from_currency, to_currency)
        index = bisect.bisect_right(self._dates.get(key, []), day)
        return self._rates[key][index - 1] if index else None


class TaxRuleResolver:
    """The most specific active rule matching (entity country, client) wins (§3.9)."""

    def __init__(self) -> None:
        self._rules = list(TaxRule.objects.filter(active=True))

    @staticmethod
    def relation(entity_country: str, client_country: str) -> str:
        if entity_country == client_country:
            return TaxRule.Relation.DOMESTIC
        if entity_country in EU_MEMBER_STATES and client_country in EU_MEMBER_STATES:
            return TaxRule.Relation.EU_OTHER
        return TaxRule.Relation.EXPORT

    def find(self, *, entity_country: str, client: Client) -> TaxRule | None:
        relation = self.relation(entity_country, client.country)
        vat_registered = client.has_valid_vat_id
        best, best_score = None, -1
        for rule in self._rules:
            if rule.entity_country == entity_country:
                entity_score = 2
            elif rule.entity_country == "EU" and entity_country in EU_MEMBER_STATES:
                entity_score = 1
            else:
                continue
            if rule.client_relation == relation:
                relation_score = 2
            elif rule.client_relation == TaxRule.Relation.ANY:
                relation_score = 1
            else:
                continue
            if rule.client_country and rule.client_country != client.country:
                continue
            if rule.client_vat_registered is not None and rule.client_vat_registered != vat_registered:
                continue
            score = (
                entity_score * 100
                + relation_score * 10
                + (4 if rule.client_country else 0)
                + (2 if rule.client_vat_registered is not None else 0)
            )
            if score > best_score:
                best, best_score = rule, score
        return best
