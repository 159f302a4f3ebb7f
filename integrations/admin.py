"""Admin of the integration records: all written by services (API, outbox, webhooks, imports), so read-only.

The one action: finance retries dead-letter outbox messages, through `outbox_retry_dead`
(with a reason, audited). Integration clients are created and revoked with
`manage.py integration_client` (the token is shown once and never stored).
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from integrations.models import (
    EndpointCircuit,
    ErpEntityMapping,
    ErpTaxMapping,
    IdempotencyRecord,
    ImportBatch,
    IntegrationClient,
    OutboxMessage,
    WebhookEvent,
)
from kernel.admin import AuditorReadOnlyMixin, BillableHistoryAdmin, TransitionLogInline, service_action_with_reason


class ServiceWrittenAdmin(AuditorReadOnlyMixin, admin.ModelAdmin):
    """Viewable by whoever may view the model; nobody adds, edits or deletes rows by hand."""

    list_per_page = 50

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields]

    def has_add_permission(self, request, *args, **kwargs) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


outbox_retry_dead = service_action_with_reason(
    module_path="integrations.services.outbox", func_name="outbox_retry_dead", kwarg="message",
    description="Retry selected dead letters (with a reason)", done="queued again",
)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ServiceWrittenAdmin):
    list_display = ("idempotency_key", "kind", "status", "attempts", "last_status_code", "next_attempt_at",
                    "external_id", "created_at", "delivered_at")
    list_filter = ("status", "kind", "endpoint")
    search_fields = ("idempotency_key", "external_id", "correlation_id", "invoice__number", "client__code")
    date_hierarchy = "created_at"
    list_select_related = ("invoice", "client")
    raw_id_fields = ("invoice", "client")
    actions = [outbox_retry_dead]
    inlines = [TransitionLogInline]

    def has_change_permission(self, request, obj=None) -> bool:
        # The change permission is what lets finance run the retry action; every field stays read-only.
        return AuditorReadOnlyMixin.has_change_permission(self, request, obj)


@admin.register(EndpointCircuit)
class EndpointCircuitAdmin(ServiceWrittenAdmin):
    list_display = ("endpoint", "state", "consecutive_failures", "open_until", "updated_at")


@admin.register(IntegrationClient)
class IntegrationClientAdmin(ServiceWrittenAdmin):
    list_display = ("name", "source", "token_prefix", "is_active", "throttle_rate", "last_used_at", "revoked_at")
    list_filter = ("is_active", "source")
    search_fields = ("name", "token_prefix")
    exclude = ("token_hash", "webhook_secret")

    def get_readonly_fields(self, request, obj=None):
        return [f for f in super().get_readonly_fields(request, obj) if f not in ("token_hash", "webhook_secret")]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ServiceWrittenAdmin):
    list_display = ("client", "key", "method", "path", "status_code", "created_at")
    list_filter = ("method", "status_code")
    search_fields = ("key", "path")
    list_select_related = ("client",)
    exclude = ("response_body",)

    def get_readonly_fields(self, request, obj=None):
        return [f for f in super().get_readonly_fields(request, obj) if f != "response_body"]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ServiceWrittenAdmin):
    list_display = ("event_id", "client", "event_type", "result", "received_at", "payment_link")
    list_filter = ("result", "event_type")
    search_fields = ("event_id", "correlation_id")
    date_hierarchy = "received_at"
    list_select_related = ("client", "payment")
    raw_id_fields = ("payment",)

    @admin.display(description="payment")
    def payment_link(self, obj: WebhookEvent) -> str:
        if not obj.payment_id:
            return "—"
        url = reverse("admin:billing_payment_change", args=[obj.payment_id])
        return format_html('<a href="{}">{}</a>', url, obj.payment_id)


@admin.register(ImportBatch)
class ImportBatchAdmin(ServiceWrittenAdmin):
    list_display = ("id", "kind", "resource", "filename", "status", "rows_total", "rows_failed", "started_at")
    list_filter = ("kind", "status")
    search_fields = ("filename", "resource", "correlation_id")
    date_hierarchy = "started_at"
    raw_id_fields = ("submitted_by", "integration_client")


@admin.register(ErpEntityMapping)
class ErpEntityMappingAdmin(BillableHistoryAdmin):
    """Billing admins say which ERP company books each entity; checked against the ERP before posting."""

    list_display = ("entity", "erp_company", "receivable_account", "revenue_account", "journal", "close_journal")
    search_fields = ("entity__code", "erp_company")


@admin.register(ErpTaxMapping)
class ErpTaxMappingAdmin(BillableHistoryAdmin):
    """Billable tax (entity, category, rate) → the ERP tax that books it."""

    list_display = ("entity", "category", "rate", "erp_tax")
    list_filter = ("entity", "category")
    search_fields = ("erp_tax",)
