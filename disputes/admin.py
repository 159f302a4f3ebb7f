"""Django admin of disputes: read-only pages with history (changes go through the portal's services)."""

from __future__ import annotations

from django.contrib import admin

from disputes.models import Dispute, DisputeLine, DisputeNote
from kernel.admin import AuditorReadOnlyMixin, BillableHistoryAdmin, ReadOnlyInlineMixin, TransitionLogInline


class DisputeLineInline(ReadOnlyInlineMixin, AuditorReadOnlyMixin, admin.TabularInline):
    model = DisputeLine
    fields = ("invoice_line", "amount")
    readonly_fields = fields


class DisputeNoteInline(ReadOnlyInlineMixin, AuditorReadOnlyMixin, admin.TabularInline):
    model = DisputeNote
    fields = ("created_at", "author", "text", "attachment")
    readonly_fields = fields


@admin.register(Dispute)
class DisputeAdmin(BillableHistoryAdmin):
    """Disputes are opened, worked and resolved in the portal (disputes.services): no edits here."""

    list_display = ("id", "invoice", "category", "status", "outcome", "disputed_amount", "currency", "owner",
                    "due_date", "opened_at")
    list_filter = ("status", "category", "outcome")
    search_fields = ("invoice__number", "customer_reference", "invoice__client__code", "invoice__client__legal_name")
    list_select_related = ("invoice", "owner")
    date_hierarchy = "opened_at"
    inlines = [DisputeLineInline, DisputeNoteInline, TransitionLogInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
