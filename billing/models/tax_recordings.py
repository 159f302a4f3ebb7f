"""What the tax engine must still be told: one row per approved invoice or credit note it records.

The row is written in the approval's transaction, so an approval can never commit without its
report to the tax engine on record; the report itself is made after the commit and retried on a
schedule while the engine is down (`billing.services.tax_recordings`). Nothing is lost, and the
admin shows what is still pending and why.
"""

from __future__ import annotations

from django.db import models

from billing.models.invoices import Invoice


class TaxEngineRecording(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Recorded"

    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, related_name="tax_engine_recording")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "tax engine recording"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="taxrec_pending_due", condition=models.Q(status="pending")
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status="pending", done_at__isnull=True)
                | models.Q(status="done", done_at__isnull=False),
                name="taxrec_done_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice.display_number}: {self.get_status_display()}"
