"""The chunks of a billing run fanned out to django-q2 workers (ADR 0115)."""

from __future__ import annotations

from django.db import models

from billing.models.invoices import BillingRun


class BillingRunChunk(models.Model):
    """A slice of a run's contracts, billed by whichever worker claims it, in one transaction.

    Claimed under its row lock (`SELECT … FOR UPDATE SKIP LOCKED`) inside the transaction that
    bills it and marks it `done`: a worker that dies rolls the claim back with the billing, and a
    re-delivered task finds the chunk done (or taken) and bills nothing. `waits_for`: the positions
    of earlier chunks drawing on one of the same purchase orders; the chunk is claimed only once
    they are done, so a PO is drawn in the order of a run billed on one worker (§13).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    contract_ids = models.JSONField(default=list)
    waits_for = models.JSONField(default=list, blank=True, help_text="Positions of earlier chunks sharing a PO.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    summary = models.JSONField(default=dict, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "position"]  # never through the run (a join a row lock would take along)
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="billing_billingrunchunk_position_once"),
        ]

    def __str__(self) -> str:
        return f"Run {self.run_id} chunk {self.position} ({self.status})"
