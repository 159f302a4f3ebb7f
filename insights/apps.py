from django.apps import AppConfig
from django.db.models.signals import post_migrate


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights (KPIs, dashboards, assistive scores)"

    def ready(self) -> None:
        from insights.tasks import ensure_retrain_schedule, ensure_snapshot_schedule

        post_migrate.connect(ensure_retrain_schedule, sender=self, dispatch_uid="insights.retrain_schedule")
        post_migrate.connect(ensure_snapshot_schedule, sender=self, dispatch_uid="insights.snapshot_schedule")
