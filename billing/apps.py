from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_billing_defaults(sender, *, using: str = "default", **kwargs) -> None:
    """Restore the seeded defaults when they are entirely absent (a fresh or flushed database).

    Migrations seed them once; after a flush (transactional tests) Django emits
    post_migrate again and this puts them back. Only empty tables are filled, so
    a billing admin's edits are never undone.
    """
    from django_q.models import Schedule

    from billing import schedules
    from billing.models import TaxRule
    from billing.tax_defaults import create_default_tax_rules

    if not TaxRule.objects.using(using).exists():
        create_default_tax_rules(TaxRule)
    if not Schedule.objects.using(using).filter(func=schedules.MONTHLY_RUN_FUNC).exists():
        schedules.schedule_monthly_run(Schedule)
    if not Schedule.objects.using(using).filter(func=schedules.STALE_RUN_SWEEP_FUNC).exists():
        schedules.schedule_stale_run_sweep(Schedule)
    if not Schedule.objects.using(using).filter(func=schedules.TAX_ENGINE_RETRY_FUNC).exists():
        schedules.schedule_tax_engine_retry(Schedule)


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        post_migrate.connect(ensure_billing_defaults, sender=self, dispatch_uid="billing.defaults")
        # Invoices, credit notes, work, milestones and change orders go through the approval engine.
        from billing.approval_handlers import register_billing_subjects

        register_billing_subjects()
