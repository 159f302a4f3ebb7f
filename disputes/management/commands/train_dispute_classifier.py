"""`manage.py train_dispute_classifier`: train the dispute-category model on the firm's disputes."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from disputes.services.classifier import train_dispute_classifier
from kernel.errors import ApplicationError


class Command(BaseCommand):
    help = "Train the dispute-category model (suggestions only) and print its held-out accuracy."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=0, help="Seed of the held-out split.")

    def handle(self, *args, **options):
        try:
            model = train_dispute_classifier(seed=options["seed"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Trained on {model.samples} disputes; held-out accuracy {model.accuracy} on {model.test_samples} "
            f"(always the most common category: {model.baseline_accuracy}). {model.note}".strip()
        )
