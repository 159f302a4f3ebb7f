"""Reads of the import screens: history of inbound imports (CSV and API bulk)."""

from __future__ import annotations

from django.db.models import QuerySet

from integrations.models import ImportBatch


def import_history(*, kind: str = "") -> QuerySet[ImportBatch]:
    """Newest first, with who submitted them, in one query (errors are loaded only on the detail page)."""
    qs = ImportBatch.objects.select_related("submitted_by", "integration_client").defer("errors")
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-started_at", "-id")


def import_detail(pk: int) -> ImportBatch:
    return ImportBatch.objects.select_related("submitted_by", "integration_client").get(pk=pk)
