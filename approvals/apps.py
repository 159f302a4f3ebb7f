from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        """Put the default approval policies and reminder schedules back after a flush (transactional tests)."""
        from approvals.services.defaults import ensure_approval_defaults

        post_migrate.connect(ensure_approval_defaults, sender=self, dispatch_uid="approvals.defaults")
