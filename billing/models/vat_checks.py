"""VIES VAT-number checks of clients (docs/rules/vat-checks.md, ADR 0077): one row per consultation, kept."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class VatCheck(models.Model):
    """One answer of VIES (or its absence) for a client's VAT id; rows are never changed, so they are the history."""

    class Result(models.TextChoices):
        VALID = "valid", "Valid"
        INVALID = "invalid", "Invalid"
        UNAVAILABLE = "unavailable", "VIES unavailable"

    client = models.ForeignKey("billing.Client", on_delete=models.CASCADE, related_name="vat_checks")
    vat_id = models.CharField(max_length=30, help_text="The VAT id as checked (country prefix included).")
    result = models.CharField(max_length=12, choices=Result.choices)
    checked_at = models.DateTimeField(help_text="When Billable asked (UTC).")
    request_date = models.DateField(null=True, blank=True, help_text="VIES's date of the consultation.")
    consultation_number = models.CharField(
        max_length=40, blank=True, default="", help_text="VIES's request identifier: proof of the check."
    )
    name = models.CharField(max_length=300, blank=True, default="", help_text="Trader name as VIES returns it.")
    address = models.CharField(max_length=500, blank=True, default="")
    message = models.CharField(max_length=500, blank=True, default="", help_text="VIES's error, if any.")
    checked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+", help_text="Empty: checked by a billing run.")

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["client", "-checked_at"], name="billing_vatcheck_latest")]
        constraints = [
            models.CheckConstraint(condition=Q(result__in=["valid", "invalid", "unavailable"]),
                                   name="billing_vatcheck_result_valid"),
            models.CheckConstraint(condition=Q(result="unavailable") | Q(request_date__isnull=False),
                                   name="billing_vatcheck_answer_has_date"),
        ]

    def __str__(self) -> str:
        return f"{self.vat_id}: {self.get_result_display()} ({self.checked_at:%Y-%m-%d})"

    @property
    def answer(self) -> str:
        """VIES's answer in one sentence (shown in the exception and on the client page)."""
        if self.result == self.Result.UNAVAILABLE:
            return f"VIES did not answer for {self.vat_id}: {self.message or 'unavailable'}."
        text = f"VIES answered {self.get_result_display().lower()} for {self.vat_id} on {self.request_date}"
        if self.consultation_number:
            text += f" (consultation {self.consultation_number})"
        if self.name and self.name != "---":
            text += f", trader {self.name}"
        return text + "."
