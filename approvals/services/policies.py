"""Which approval policy applies to a subject.

A policy matches when every condition it sets holds for the subject's facts.
Among the matches the lowest `priority` wins, then the most specific policy
(most conditions set), then the oldest. Amounts are in the entity's currency,
`min_amount ≤ amount < max_amount`; an amount that cannot be converted (no FX
rate) is treated as the highest band: only policies without `max_amount` match.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Prefetch

from approvals.models import ApprovalPolicy, ApprovalStep
from approvals.registry import SubjectFacts
from approvals.services.subjects import collect_facts


def active_policies(subject_types: Iterable[str] | None = None) -> list[ApprovalPolicy]:
    """Active policies with their steps (two queries), best candidates first."""
    qs = ApprovalPolicy.objects.filter(active=True).prefetch_related(
        Prefetch("steps", queryset=ApprovalStep.objects.select_related("user").order_by("order"))
    )
    if subject_types is not None:
        qs = qs.filter(subject_type__in=set(subject_types))
    return sorted(qs, key=lambda p: (p.priority, -p.specificity, p.pk))


def _amount_matches(policy: ApprovalPolicy, facts: SubjectFacts) -> bool:
    """`min_amount ≤ amount < max_amount`; an unconvertible amount is the highest band (no `max_amount`)."""
    if policy.min_amount is None and policy.max_amount is None:
        return True
    if facts.amount_unconvertible:
        return policy.max_amount is None
    if facts.entity_amount is None:
        return False  # the subject has no amount (time entries): amount bands do not apply
    if policy.min_amount is not None and facts.entity_amount < policy.min_amount:
        return False
    return policy.max_amount is None or facts.entity_amount < policy.max_amount


def policy_matches(policy: ApprovalPolicy, facts: SubjectFacts) -> bool:
    if policy.subject_type != facts.subject_type or not _amount_matches(policy, facts):
        return False
    if policy.entity_id is not None and policy.entity_id != facts.entity_id:
        return False
    if policy.client_id is not None and policy.client_id != facts.client_id:
        return False
    if policy.billing_model and policy.billing_model != facts.billing_model:
        return False
    if policy.requires_warning and policy.requires_warning not in facts.warnings:
        return False
    if policy.min_cap_growth_pct is None:
        return True
    return facts.cap_growth_pct is not None and facts.cap_growth_pct > policy.min_cap_growth_pct


def match_policy(policies: Iterable[ApprovalPolicy], facts: SubjectFacts) -> ApprovalPolicy | None:
    """The first matching policy of `policies` (already in preference order) that has steps."""
    for policy in policies:
        if policy_matches(policy, facts) and list(policy.steps.all()):
            return policy
    return None


def approval_policy_for(subject: Any) -> ApprovalPolicy | None:
    """The policy that would route `subject` now, or None when no active policy matches."""
    facts = collect_facts([subject])[0]
    return match_policy(active_policies([facts.subject_type]), facts)
