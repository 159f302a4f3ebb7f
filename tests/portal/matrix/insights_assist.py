"""Objects of the assistive-intelligence rows of the permissions matrix (portal/matrix/insights_assist.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from insights.models import SowReading, SowSuggestion
from tests.factories import ContractFactory

SOW = b"Invoices are payable within 30 days of the invoice date. Purchase Order number 4500999001 applies.\n"


def build_targets(world) -> dict[str, Any]:
    contract = ContractFactory(code="MATRIX-SOW")
    suggestion = SowSuggestion.objects.create(
        contract=contract, field=SowSuggestion.Field.PO_NUMBER, value="4500999001",
        sentence="Purchase Order number 4500999001 applies.", confidence=Decimal("0.85"), document_name="sow.txt",
    )
    reading = SowReading.objects.create(contract=contract, document="contracts/sow/sow.txt", document_name="sow.txt",
                                        status=SowReading.Status.DONE, suggestions_created=1)
    return {"sow-contract": contract, "sow-sugg": suggestion, "sow-reading": reading}


BODIES = {
    "insights:sow_upload": lambda w, o: {"document": SimpleUploadedFile("sow.txt", SOW, content_type="text/plain")},
    "insights:sow_decide": lambda w, o: {"decision": "accept", "reason": "Matrix check"},
}
