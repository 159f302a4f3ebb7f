from django.apps import AppConfig
from django.db.models.signals import post_migrate


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights (KPIs, dashboards, assistive scores)"

    def ready(self) -> None:
        from billing.hooks import register_cash_impact, register_invoice_scorer
        from insights.services.priority import annotate_cash_impact
        from insights.services.scoring import score_invoices
        from insights.tasks import ensure_retrain_schedule, ensure_snapshot_schedule

        # Billing scores new drafts and sorts by cash priority through these hooks, never by import (ADR 0080).
        register_invoice_scorer(score_invoices)
        register_cash_impact(annotate_cash_impact)

        post_migrate.connect(ensure_retrain_schedule, sender=self, dispatch_uid="insights.retrain_schedule")
        post_migrate.connect(ensure_snapshot_schedule, sender=self, dispatch_uid="insights.snapshot_schedule")
