"""Django admin for assistive intelligence: scores and models are written by services (read-only here);
SOW suggestions are decided through the same services as the review page (admin actions).

Auditors see everything and change nothing.
"""

from __future__ import annotations

from django.contrib import admin

from insights.models import InvoiceScore, RiskModel, RoleSynonym, SowSuggestion
from kernel.admin import AuditorReadOnlyMixin, BillableHistoryAdmin, service_action, service_action_with_reason


class _ServiceWritten(AuditorReadOnlyMixin, admin.ModelAdmin):
    def has_add_permission(self, request, *args, **kwargs) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(InvoiceScore)
class InvoiceScoreAdmin(_ServiceWritten):
    list_display = ("invoice", "anomaly_score", "risk_score", "risk_model", "scored_at")
    list_select_related = ("invoice", "risk_model")
    search_fields = ("invoice__number", "invoice__client__code")
    readonly_fields = (
        "invoice", "anomaly_score", "anomaly_reasons", "risk_score", "risk_reasons", "risk_model", "note", "scored_at"
    )


@admin.register(RiskModel)
class RiskModelAdmin(_ServiceWritten):
    list_display = ("trained_at", "algorithm", "samples", "positives", "roc_auc", "baseline_auc", "is_active")
    list_filter = ("is_active",)
    readonly_fields = (
        "trained_at", "algorithm", "features", "parameters", "samples", "positives", "roc_auc", "baseline_auc",
        "is_active", "note",
    )


@admin.register(SowSuggestion)
class SowSuggestionAdmin(AuditorReadOnlyMixin, admin.ModelAdmin):
    list_display = ("contract", "field", "role_code", "value", "confidence", "decision", "decided_by", "decided_at")
    list_filter = ("field", "decision")
    list_select_related = ("contract", "decided_by")
    search_fields = ("contract__code", "value", "sentence")
    readonly_fields = (
        "contract", "field", "value", "role_code", "sentence", "confidence", "decision", "decided_by", "decided_at",
        "document_name", "change_order", "created_at",
    )
    actions = [
        service_action_with_reason(
            module_path="insights.services.sow", func_name="sow_suggestion_accept", kwarg="suggestion",
            description="Accept (with a reason: a draft contract takes it, a live one gets a draft change order)",
            done="accepted",
        ),
        service_action(
            module_path="insights.services.sow", func_name="sow_suggestion_reject", kwarg="suggestion",
            description="Reject", done="rejected",
        ),
    ]

    def has_add_permission(self, request, *args, **kwargs) -> bool:
        return False  # suggestions come from an uploaded SOW (the review page)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RoleSynonym)
class RoleSynonymAdmin(BillableHistoryAdmin):
    """The firm's own titles for its roles, used when reading rates from statements of work."""

    list_display = ("phrase", "role")
    list_select_related = ("role",)
    search_fields = ("phrase", "role__code", "role__name")
    autocomplete_fields = ("role",)
