"""Objects of the revenue rows of the permissions matrix (portal/matrix/revenue.py)."""

from __future__ import annotations

from typing import Any

from tests.factories import ContractFactory, ProjectFactory


def build_targets(world) -> dict[str, Any]:
    contract = ContractFactory(code="MX-REV-FF", fixed_fee=True)
    ProjectFactory(code="MX-REV-FF-P", contract=contract, project_manager=world.users["project_manager"])
    return {"rev-ffc": contract}


BODIES = {
    "revenue:close": lambda world, obj: {"period": "2026-10", "action": "draft"},
    "revenue:estimates": lambda world, obj: {"contract": obj.pk, "hours": "120", "as_of": "2026-10-01"},
}
