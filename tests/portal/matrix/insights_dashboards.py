"""Objects of the KPI dashboard rows of the permissions matrix (portal/matrix/insights_dashboards.py): none."""

from __future__ import annotations

from typing import Any


def build_targets(world) -> dict[str, Any]:
    return {}


BODIES = {"insights:dashboard": lambda world, obj: {}}
