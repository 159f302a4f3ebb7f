"""Objects of the PM rows of the permissions matrix (portal/matrix/pm_work.py)."""

from __future__ import annotations

from typing import Any

from tests.factories import ChangeOrderFactory, InvoiceFactory


def build_targets(world) -> dict[str, Any]:
    own_contract = world.own_project.contract
    return {
        "co-draft-own": ChangeOrderFactory(contract=own_contract, code="CO-MX-DRAFT"),
        "co-draft-other": ChangeOrderFactory(contract=world.targets["prj-other"].contract, code="CO-MX-THEIRS"),
        "inv-pm-own": InvoiceFactory(contract=own_contract),
        "inv-pm-other": world.targets["inv-pending"],
    }


def _change_order_body(world, _obj) -> dict:
    return {
        "contract": world.own_project.contract.pk,
        "description": "Matrix check: two more workshop days",
        "cap_delta": "1500.00",
        "action": "save",
        "rates-TOTAL_FORMS": "0", "rates-INITIAL_FORMS": "0",
        "milestones-TOTAL_FORMS": "0", "milestones-INITIAL_FORMS": "0",
    }


BODIES = {
    "approvals:pm_change_order_new": _change_order_body,
    "approvals:pm_change_order_edit": _change_order_body,
}
