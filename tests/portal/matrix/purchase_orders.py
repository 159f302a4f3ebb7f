"""Objects of the purchase-order rows of the permissions matrix (portal/matrix/purchase_orders.py)."""

from __future__ import annotations

from typing import Any

from tests.billing.po_helpers import purchase_order
from tests.factories import ClientFactory


def build_targets(world) -> dict[str, Any]:
    return {"po": purchase_order(ClientFactory(code="MX-PO"), amount="5000.00", number="PO-MX-1")}
