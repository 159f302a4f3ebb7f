"""Objects of the inbound-import rows of the permissions matrix (portal/matrix/integrations_imports.py)."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from integrations.services.csv_import import import_time_csv

HEADER = "external_id,person_email,project_code,date,hours,billable,description\n"


def _csv(world: Any, external_id: str) -> bytes:
    person = world.users["consultant"].person
    row = f"{external_id},{person.email},{world.own_project.code},2025-03-13,3,true,Matrix import\n"
    return (HEADER + row).encode()


def build_targets(world: Any) -> dict[str, Any]:
    finance = world.delegate  # a finance analyst outside the columns
    outcome = import_time_csv(content=_csv(world, "mx-dry-1"), filename="matrix.csv", user=finance,
                              source="psa-matrix", dry_run=True)
    assert outcome.status == "dry_run" and not outcome.errors, outcome.results
    return {"imp-dry": outcome.batch}


BODIES = {
    "integrations:import_upload": lambda world, obj: {
        "file": SimpleUploadedFile("week.csv", _csv(world, "mx-up-1"), content_type="text/csv"),
        "source": "psa-matrix",
        "action": "dry_run",
    },
    "integrations:import_confirm": lambda world, obj: {},
}
