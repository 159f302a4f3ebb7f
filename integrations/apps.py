from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from integrations.middleware import connect_task_signals

        connect_task_signals()  # log lines of a task carry the correlation id of the request that queued it
