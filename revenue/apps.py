from django.apps import AppConfig


class RevenueConfig(AppConfig):
    name = "revenue"
    verbose_name = "Revenue recognition"

    def ready(self) -> None:
        # Seams (ADR 0014): integrations and approvals learn of revenue only through these registries.
        from integrations.models import OutboxMessage
        from integrations.services.outbox import register_delivery_hook
        from revenue.approval_handlers import register_handlers
        from revenue.services.posting import journal_mark_posted

        register_delivery_hook(OutboxMessage.Kind.POST_JOURNAL, journal_mark_posted)
        register_handlers()
