"""Billing frequency: which contracts a run bills, and over which billing period (docs/rules/billing.md §13).

`monthly` (the default) and `on_milestone` (fixed fee only) contracts are due in every run and their
billing period is the run's period. A `quarterly` contract is due only in a run whose period ends on a
calendar quarter end (31 Mar, 30 Jun, 30 Sep, 31 Dec); its billing period is the calendar quarter
containing the run's period end. A run restricted to named contracts ("bill now") ignores the
frequency, but a quarterly contract's billing period is still its quarter.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date

from billing.models import Contract

QUARTERLY = Contract.Frequency.QUARTERLY


def quarter_of(day: date) -> tuple[date, date]:
    """First and last day of the calendar quarter containing `day`."""
    first_month = 3 * ((day.month - 1) // 3) + 1
    last_month = first_month + 2
    return date(day.year, first_month, 1), date(day.year, last_month, calendar.monthrange(day.year, last_month)[1])


def is_quarter_end(day: date) -> bool:
    return quarter_of(day)[1] == day


def billing_period(frequency: str, run_start: date, run_end: date) -> tuple[date, date]:
    """The period a contract of this frequency is billed for in a run over (run_start, run_end)."""
    if frequency == QUARTERLY:
        return quarter_of(run_end)
    return run_start, run_end


@dataclass(frozen=True)
class NotDue:
    """A contract with work waiting that a run did not bill because of its billing frequency."""

    contract: str
    frequency: str
    next_due: date

    @property
    def reason(self) -> str:
        return (
            f"Bills quarterly: next due in the run ending {self.next_due:%Y-%m-%d} (the quarter end); "
            "its items wait. Use a run for named contracts to bill it now."
        )

    def as_dict(self) -> dict:
        return {
            "contract": self.contract,
            "frequency": self.frequency,
            "next_due": self.next_due.isoformat(),
            "reason": self.reason,
        }


def split_not_due(contract_ids: list[int], run_end: date, *, bill_now: bool) -> tuple[list[int], list[NotDue]]:
    """(due contract ids, the others with why) among a run's candidates, in the given order."""
    if bill_now or is_quarter_end(run_end):
        return contract_ids, []
    quarterly = dict(
        Contract.objects.filter(id__in=contract_ids, billing_frequency=QUARTERLY).values_list("id", "code")
    )
    if not quarterly:
        return contract_ids, []
    next_due = quarter_of(run_end)[1]
    not_due = [NotDue(quarterly[i], QUARTERLY, next_due) for i in contract_ids if i in quarterly]
    return [i for i in contract_ids if i not in quarterly], sorted(not_due, key=lambda n: n.contract)
