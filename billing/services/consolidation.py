"""Consolidated invoices: one invoice per (entity, currency, PO number) per run for a consolidating client.

Pure, like the engine: each contract is priced on its own (`price_contract`: discount, cap and
gates stay per contract), then the drafts of a consolidating client are merged here. Tax is
computed once on the merged subtotal; the due date takes the longest payment terms; every line
keeps its contract and project, ordered by contract code then project code (docs/rules/billing.md §13).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from billing.services.billing_engine import Code, InvoiceDraft, _apply_tax, _check_total
from billing.services.pricing import TaxRuleResolver
from billing.tax_engine import TaxEngine
from kernel.money import ZERO

#: Findings recomputed on the merged invoice rather than carried from each contract's part.
RECOMPUTED = {Code.NON_POSITIVE_TOTAL, Code.TAX_RULE_MISSING, Code.TAX_ENGINE_UNAVAILABLE}


def consolidation_key(draft: InvoiceDraft) -> tuple | None:
    """(client, entity, currency, PO number) for a consolidating client's draft; None otherwise."""
    contract = draft.contract
    if not contract.client.consolidate_invoices:
        return None
    return (contract.client_id, contract.entity_id, draft.currency, (contract.po_number or "").strip())


def consolidate(
    drafts: Sequence[InvoiceDraft], *, taxes: TaxEngine | TaxRuleResolver, project_codes: dict[int, str]
) -> list[InvoiceDraft]:
    """Drafts of non-consolidating clients unchanged; those of a consolidating client merged per key."""
    result: list[InvoiceDraft] = []
    groups: dict[tuple, list[InvoiceDraft]] = defaultdict(list)
    for draft in drafts:
        key = consolidation_key(draft)
        if key is None:
            result.append(draft)
        else:
            groups[key].append(draft)
    for members in groups.values():
        result.append(merge(members, taxes=taxes, project_codes=project_codes))
    return result


def merge(
    members: Sequence[InvoiceDraft], *, taxes: TaxEngine | TaxRuleResolver, project_codes: dict[int, str]
) -> InvoiceDraft:
    members = sorted(members, key=lambda d: (d.contract.code, project_codes.get(d.project_id or 0, "")))
    first = members[0]
    merged = InvoiceDraft(
        contract=first.contract,
        project_id=None,
        currency=first.currency,
        issue_date=first.issue_date,
        due_date=max(d.due_date for d in members),
        period_start=min(d.period_start for d in members),
        period_end=max(d.period_end for d in members),
        retainer_period=first.retainer_period,
        purchase_order=next((d.purchase_order for d in members if d.purchase_order is not None), None),
        consolidated=True,
    )
    for draft in members:
        contract = draft.contract
        own = sorted(
            draft.lines,
            # Grouped by project (code order); lines without a project (discount, retainer fee) close the contract.
            key=lambda line: (line.project_id is None, project_codes.get(line.project_id or 0, "")),
        )
        for line in own:
            line.contract_id = contract.id
            merged.lines.append(line)
        for finding in draft.exceptions:
            if finding.code in RECOMPUTED:
                continue
            message = finding.message if contract.code in finding.message else f"Contract {contract.code}: "
            if message != finding.message:
                message += finding.message
            merged.add(finding.code, finding.severity, message, finding.amount, hint=finding.hint)
    # The merged invoice's service period follows from its lines (min/max of theirs, §14).
    merged.subtotal = sum((line.amount for line in merged.lines), ZERO)
    _apply_tax(merged, first.contract, taxes)
    _check_total(merged)
    return merged


def contract_units(contract_ids: Sequence[int]) -> list[list[int]]:
    """Candidate contracts in groups billed together: a consolidating client's contracts form one group.

    The run chunks by group, so a consolidated invoice is never split across chunks.
    """
    from billing.models import Contract

    consolidating = dict(
        Contract.objects.filter(id__in=list(contract_ids), client__consolidate_invoices=True).values_list(
            "id", "client_id"
        )
    )
    units: list[list[int]] = []
    by_client: dict[int, list[int]] = {}
    for contract_id in contract_ids:
        client_id = consolidating.get(contract_id)
        if client_id is None:
            units.append([contract_id])
        elif client_id in by_client:
            by_client[client_id].append(contract_id)
        else:
            by_client[client_id] = [contract_id]
            units.append(by_client[client_id])
    return units


def chunks_of(units: list[list[int]], size: int) -> list[list[int]]:
    chunks: list[list[int]] = []
    current: list[int] = []
    for unit in units:
        if current and len(current) + len(unit) > size:
            chunks.append(current)
            current = []
        current.extend(unit)
    if current:
        chunks.append(current)
    return chunks
