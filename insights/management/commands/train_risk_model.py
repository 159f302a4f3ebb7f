"""python manage.py train_risk_model [--today YYYY-MM-DD] [--no-rescore]: the weekly task, on demand."""

from __future__ import annotations

import datetime

from django.core.management.base import BaseCommand

from insights.services.risk import train_risk_model
from insights.services.scoring import rescore_open_invoices


class Command(BaseCommand):
    help = "Train the dispute-risk model on the labelled history; activate it when good enough; re-score."

    def add_arguments(self, parser):
        parser.add_argument("--today", type=datetime.date.fromisoformat, default=None,
                            help="Train as of this date (labels need 60 days after issue).")
        parser.add_argument("--no-rescore", action="store_true", help="Do not refresh the open invoices' scores.")

    def handle(self, *args, today=None, no_rescore=False, **options):
        model = train_risk_model(today=today)
        auc = f"{model.roc_auc}" if model.roc_auc is not None else "—"
        baseline = f"{model.baseline_auc}" if model.baseline_auc is not None else "—"
        self.stdout.write(
            f"Model {model.pk}: {model.samples} labelled invoices, {model.positives} disputed or credited; "
            f"held-out ROC AUC {auc} (baseline {baseline}); {'ACTIVE' if model.is_active else 'not active'}."
        )
        c = (model.parameters or {}).get("comparison")
        if c:
            self.stdout.write(
                f"Same split ({c['train']} train / {c['test']} test, {c['test_positives']} disputed in test): "
                f"AUC invoice-only {c['base_auc']}, with payment behaviour, notes and churn {c['extended_auc']}; "
                f"kept: {c['winner']}."
            )
        if model.note:
            self.stdout.write(model.note)
        if not no_rescore:
            self.stdout.write(f"Re-scored {rescore_open_invoices()} open invoices.")
