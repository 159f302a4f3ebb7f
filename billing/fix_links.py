"""Where a user fixes what blocks an invoice: the admin page of the record to change (docs/rules/screens.md).

URL building stays out of the services: persistence asks here for the link an exception carries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.urls import reverse

from billing.services.billing_engine import Code

if TYPE_CHECKING:
    from billing.services.billing_engine import InvoiceDraft


def exception_fix_url(code: str, draft: InvoiceDraft) -> str:
    """Where to fix what blocks: the record a user must change (docs/rules/screens.md: explain every block)."""
    contract = draft.contract
    targets = {
        Code.CLIENT_MASTER_DATA_INVALID: ("admin:billing_client_change", contract.client_id),
        Code.CLIENT_ON_CREDIT_HOLD: ("admin:billing_client_change", contract.client_id),
        Code.PO_REQUIRED_MISSING: ("admin:billing_contract_change", contract.id),
        Code.CHANGE_ORDER_PENDING: ("admin:billing_contract_change", contract.id),
        Code.MISSING_RATE: ("admin:billing_contract_change", contract.id),
        Code.CAP_EXCEEDED: ("admin:billing_contract_change", contract.id),
        Code.PROJECT_NOT_BILLABLE: ("admin:billing_contract_change", contract.id),
        Code.MISSING_FX_RATE: ("admin:billing_fxrate_changelist", None),
        Code.TAX_RULE_MISSING: ("admin:billing_taxrule_changelist", None),
    }
    po = draft.purchase_order
    if po is not None:  # the PO to raise, extend or correct (docs/rules/billing.md §13)
        for po_code in (Code.PO_EXCEEDED, Code.PO_EXPIRED, Code.PO_CURRENCY_MISMATCH):
            targets[po_code] = ("admin:billing_purchaseorder_change", po.pk)
    target = targets.get(code)
    if target is None:
        return ""
    name, pk = target
    try:
        return reverse(name, args=[pk] if pk else [])
    except Exception:  # admin not mounted (e.g. a stripped-down worker)
        return ""
