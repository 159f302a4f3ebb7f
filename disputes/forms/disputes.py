"""Forms of the dispute and credit-note screens. They parse input; the services decide."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from billing.models import InvoiceLine
from disputes.models import Dispute
from kernel.roles import COLLECTIONS, FINANCE_ANALYST, FINANCE_CONTROLLER

MONEY_FIELD = {"max_digits": 18, "decimal_places": 2, "min_value": Decimal("0.01")}


def dispute_workers():
    """Users who may own a dispute: finance and collections (active)."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=[FINANCE_ANALYST, FINANCE_CONTROLLER, COLLECTIONS]) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


class LineSelectionMixin:
    """One tick box and one amount field per invoice line: `line_<id>` and `amount_<id>`."""

    lines: list[InvoiceLine]

    def add_line_fields(self, lines: list[InvoiceLine], *, ticked: set[int] | None = None,
                        amounts: dict[int, Decimal] | None = None) -> None:
        self.lines = lines
        for line in lines:
            self.fields[f"line_{line.pk}"] = forms.BooleanField(required=False, initial=line.pk in (ticked or set()))
            self.fields[f"amount_{line.pk}"] = forms.DecimalField(
                required=False, initial=(amounts or {}).get(line.pk, line.amount), **MONEY_FIELD
            )

    def line_rows(self) -> list[dict[str, Any]]:
        return [{"line": line, "tick": self[f"line_{line.pk}"], "amount": self[f"amount_{line.pk}"]}
                for line in self.lines]

    def selected_lines(self) -> list[tuple[InvoiceLine, Decimal]]:
        chosen = []
        for line in self.lines:
            if self.cleaned_data.get(f"line_{line.pk}"):
                amount = self.cleaned_data.get(f"amount_{line.pk}")
                chosen.append((line, amount if amount is not None else line.amount))
        return chosen


class DisputeOpenForm(LineSelectionMixin, forms.Form):
    category = forms.ChoiceField(choices=Dispute.Category.choices)
    disputed_amount = forms.DecimalField(
        required=False, help_text="Gross, at most the open balance. Empty: the ticked lines with tax, or the balance.",
        **MONEY_FIELD,
    )
    customer_reference = forms.CharField(required=False, max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    owner = forms.ModelChoiceField(queryset=None, required=False, empty_label="Me")
    due_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                               help_text="Empty: the SLA (days from today).")

    def __init__(self, *args: Any, lines: list[InvoiceLine], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = dispute_workers()
        self.add_line_fields(lines)


class NoteForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000)
    attachment = forms.FileField(required=False)

    MAX_BYTES = 10 * 1024 * 1024

    def clean_attachment(self):
        attachment = self.cleaned_data.get("attachment")
        if attachment and attachment.size > self.MAX_BYTES:
            raise forms.ValidationError("At most 10 MB.")
        return attachment


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000)


class ReassignForm(forms.Form):
    owner = forms.ModelChoiceField(queryset=None)
    due_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = dispute_workers()


class DisputeResolveForm(LineSelectionMixin, forms.Form):
    outcome = forms.ChoiceField(choices=[c for c in Dispute.Outcome.choices if c[0]], widget=forms.RadioSelect)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000)
    credit_amount = forms.DecimalField(required=False, help_text="Credit outcome: gross amount (tax included).",
                                       **MONEY_FIELD)

    def __init__(self, *args: Any, lines: list[InvoiceLine], ticked: set[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_line_fields(lines, ticked=ticked)


class CreditNoteForm(LineSelectionMixin, forms.Form):
    MODES = [
        ("full", "The whole invoice"),
        ("lines", "Selected lines (net amounts)"),
        ("amount", "An amount (gross, tax split like the invoice)"),
    ]
    mode = forms.ChoiceField(choices=MODES, widget=forms.RadioSelect, initial="full")
    amount = forms.DecimalField(required=False, **MONEY_FIELD)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000)

    def __init__(self, *args: Any, lines: list[InvoiceLine], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_line_fields(lines)

    def clean(self):
        data = super().clean()
        mode = data.get("mode")
        if mode == "amount" and not data.get("amount"):
            self.add_error("amount", "Enter the amount to credit.")
        if mode == "lines" and not self.selected_lines():
            self.add_error(None, "Tick at least one line to credit.")
        return data
