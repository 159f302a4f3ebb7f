from django.apps import AppConfig


def _service_users():
    """Users that are integration clients' service users: never approval delegates (approvals registry)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(integration_client__isnull=False)


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from approvals.services.eligibility import register_service_accounts
        from billing.hooks import register_posting_outbox
        from integrations.middleware import connect_task_signals
        from integrations.services.outbox import outbox_enqueue_document

        connect_task_signals()  # log lines of a task carry the correlation id of the request that queued it
        register_service_accounts(_service_users)
        register_posting_outbox(outbox_enqueue_document)  # billing posts to the ERP through it (ADR 0080)
