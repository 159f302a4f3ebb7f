"""Forms of the billing screens: input shape only; the services decide what is allowed."""
from __future__ import annotations

import datetime

from django import forms
from django.utils import timezone

from billing import selectors
from billing.services.billing_engine import FIX_HINTS
from kernel.periods import month_of, previous_month


class MonthInput(forms.DateInput):
    input_type = "month"

    def format_value(self, value):
        if isinstance(value, datetime.date):
            return value.strftime("%Y-%m")
        return value


class BillingRunForm(forms.Form):
    """Period (a month), run date (issue date of the invoices) and an optional contract scope."""

    period = forms.DateField(
        label="Period",
        widget=MonthInput(),
        input_formats=["%Y-%m"],
        help_text="The month to bill; approved work dated up to its last day is included.",
        error_messages={"invalid": "Choose a month, e.g. 2025-03."},
    )
    run_date = forms.DateField(
        label="Run date",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="Issue date of the invoices.",
    )
    contract_codes = forms.CharField(
        label="Contracts",
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": "All contracts", "autocomplete": "off", "spellcheck": "false"}),
        help_text="Optional: contract numbers separated by commas or spaces.",
    )

    def __init__(self, *args, today: datetime.date | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        today = today or timezone.localdate()
        if not self.is_bound:
            self.initial.setdefault("period", previous_month(today)[0])
            self.initial.setdefault("run_date", today)

    def clean_contract_codes(self) -> list[str]:
        codes = selectors.parse_contract_codes(self.cleaned_data.get("contract_codes", ""))
        unknown = selectors.unknown_contract_codes(codes) if codes else []
        if unknown:
            raise forms.ValidationError(f"Unknown contract(s): {', '.join(unknown)}.")
        return codes

    def clean(self):
        data = super().clean()
        period, run_date = data.get("period"), data.get("run_date")
        if period:
            data["period_start"], data["period_end"] = month_of(period)
            if run_date and run_date < data["period_start"]:
                self.add_error("run_date", "The run date (issue date) cannot be before the period start.")
        return data


class ReasonForm(forms.Form):
    """The reason of an override, write-down, rejection or cancellation.

    Not required here on purpose: the service refuses a blank reason with the
    message finance sees, so the rule lives in one place.
    """

    reason = forms.CharField(required=False, max_length=1000, strip=True)
    comment = forms.CharField(required=False, max_length=1000, strip=True)


class InvoiceFilterForm(forms.Form):
    """Filters of the invoice review queue (GET); invalid values are simply not applied."""

    entity = forms.CharField(required=False, max_length=20, label="Entity code")
    client = forms.CharField(required=False, max_length=100, label="Client")
    min_amount = forms.DecimalField(required=False, min_value=0, decimal_places=2, label="Total from")
    max_amount = forms.DecimalField(required=False, min_value=0, decimal_places=2, label="Total to")
    warning = forms.ChoiceField(
        required=False,
        label="Open exception",
        choices=[("", "Any"), *[(code, code) for code in sorted(FIX_HINTS)]],
    )
    min_age = forms.IntegerField(required=False, min_value=0, max_value=3650, label="Older than (days)")
    sort = forms.ChoiceField(
        required=False,
        choices=[
            ("oldest", "Oldest first"), ("largest", "Largest first"), ("due", "Due soonest"),
            ("priority", "Expected cash impact"),
        ],
    )
