"""Estimates at completion are approvable subjects of the approval engine (approvals/registry.py).

A PM proposes an estimate; finance approves it through the policy "Estimate at completion"
(migration 0003: one finance-controller step). Registered from `RevenueConfig.ready()`.
"""

from __future__ import annotations

from typing import Any

from approvals.registry import SubjectFacts, SubjectHandler, register_subject
from revenue.models import Estimate

SUBJECT_TYPE = "estimate"


class EstimateHandler(SubjectHandler):
    subject_type = SUBJECT_TYPE
    awaiting_status = Estimate.Status.PROPOSED
    related = ("contract", "contract__entity")
    display_related = ("contract",)

    def label(self, subject: Any) -> str:
        return f"estimate at completion of {subject.contract.code} ({subject.hours} h from {subject.as_of:%Y-%m-%d})"

    def preparer_id(self, subject: Any) -> int | None:
        return subject.proposed_by_id

    def preparer_phrase(self, subject: Any, *, name: str | None) -> str:
        return f"{name or 'You'} proposed {self.label(subject)}"

    def default_facts(self, subject: Any) -> SubjectFacts:
        facts = super().default_facts(subject)
        facts.contract_id = subject.contract_id
        facts.entity_id = subject.contract.entity_id
        facts.client_id = subject.contract.client_id
        facts.billing_model = subject.contract.billing_model
        return facts

    def apply_approved(self, subject: Any, *, user: Any, comment: str) -> None:
        from revenue.services.estimates import estimate_approve

        estimate_approve(estimate=subject, user=user, comment=comment)

    def apply_rejected(self, subject: Any, *, user: Any, reason: str) -> bool:
        from revenue.services.estimates import estimate_reject

        estimate_reject(estimate=subject, user=user, reason=reason)
        return True


def register_handlers() -> None:
    register_subject(Estimate, EstimateHandler())
