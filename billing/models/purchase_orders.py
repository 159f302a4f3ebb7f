"""Purchase orders with a value: the client's commitment that invoices draw down (docs/rules/billing.md §13)."""

from __future__ import annotations

from datetime import date

from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from billing.models.masterdata import Client
from kernel.fields import (
    MONEY,
    ExternallyIdentified,
    TimeStamped,
    currency_field,
    supported_currency_constraint,
)


class PurchaseOrder(ExternallyIdentified, TimeStamped):
    """A client's PO: number, currency, amount and validity; contracts linked to it draw on its balance.

    What is drawn is derived from the invoices and credit notes that carry the PO
    (`billing.services.purchase_orders.drawdown`), never stored twice. Its amount can
    only be lowered to what is already drawn (the service, and a database trigger).
    """

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="purchase_orders")
    number = models.CharField(max_length=60, help_text="The PO number the client's AP department expects.")
    currency = currency_field()
    amount = models.DecimalField(**MONEY, help_text="The PO's value before tax, in its currency.")
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Empty: open-ended.")
    raised_by = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="Who at the client can raise or extend the PO (named in the PO_EXCEEDED fix hint).",
    )
    notes = models.TextField(blank=True, default="")
    history = HistoricalRecords()

    class Meta(ExternallyIdentified.Meta):
        ordering = ["client__code", "number"]
        verbose_name = "purchase order"
        constraints = [
            *ExternallyIdentified.Meta.constraints,
            models.UniqueConstraint(fields=["client", "number"], name="billing_purchaseorder_unique_number"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="billing_purchaseorder_amount_non_negative"),
            supported_currency_constraint("purchaseorder"),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=models.F("valid_from")),
                name="billing_purchaseorder_validity_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"PO {self.number} ({self.client.code})" if self.client_id else f"PO {self.number}"

    def is_valid_on(self, day: date) -> bool:
        """Bounds inclusive; an empty `valid_to` is open-ended."""
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def validity_label(self) -> str:
        return f"{self.valid_from:%Y-%m-%d} – {self.valid_to:%Y-%m-%d}" if self.valid_to else f"from {self.valid_from}"
