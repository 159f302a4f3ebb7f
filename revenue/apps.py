from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_estimate_policy(sender: Any = None, *, using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: the estimate policy comes back after a flush, like approvals' defaults.

    Migration revenue/0003 creates it on a fresh database; a flushed test database gets it here.
    """
    from approvals.models import ApprovalPolicy, ApprovalStep

    if ApprovalPolicy.objects.using(using).filter(subject_type="estimate").exists():
        return
    policy = ApprovalPolicy.objects.using(using).create(name="Estimate at completion", subject_type="estimate")
    ApprovalStep.objects.using(using).create(
        policy=policy, order=1, approver_kind="role", role="finance_controller", sla_hours=72
    )


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
        post_migrate.connect(ensure_estimate_policy, sender=self, dispatch_uid="revenue.estimate_policy")
