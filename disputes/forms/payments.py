"""Forms of the payment screens: input shape only; `billing.services.payments` decides what is allowed."""

from __future__ import annotations

from django import forms
from django.utils import timezone

from billing.models import Payment

APPLIED_CHOICES = [("", "All"), ("yes", "Applied"), ("no", "Unapplied")]


class PaymentFilterForm(forms.Form):
    client = forms.CharField(required=False, max_length=100, label="Client",
                             widget=forms.TextInput(attrs={"placeholder": "Code or name"}))
    source = forms.ChoiceField(required=False, choices=[("", "All"), *Payment.Source.choices], label="Source")
    applied = forms.ChoiceField(required=False, choices=APPLIED_CHOICES, label="Applied")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    reference = forms.CharField(required=False, max_length=100, label="Reference",
                                widget=forms.TextInput(attrs={"placeholder": "Payment or invoice no."}))


class PaymentForm(forms.Form):
    """Finance records cash received (a bank statement line)."""

    invoice_number = forms.CharField(
        max_length=100, required=False, label="Invoice number",
        help_text="As the payer quoted it. Empty or unknown: kept as unapplied cash for matching.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    amount = forms.DecimalField(max_digits=18, decimal_places=2, min_value=0.01, label="Amount")
    currency = forms.CharField(max_length=3, min_length=3, label="Currency", initial="EUR",
                               widget=forms.TextInput(attrs={"size": 4, "autocomplete": "off"}))
    date = forms.DateField(label="Value date", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    external_reference = forms.CharField(
        max_length=90, label="Payment reference",
        help_text="The bank's transaction id: the same reference is never recorded twice.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    note = forms.CharField(required=False, max_length=1000, label="Note", widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("date", timezone.localdate())

    def clean_currency(self) -> str:
        return self.cleaned_data["currency"].strip().upper()


class PaymentApplyForm(forms.Form):
    invoice_number = forms.CharField(max_length=100, label="Invoice number",
                                     widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    reason = forms.CharField(max_length=1000, label="Reason", widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Kept in the audit trail, e.g. 'remittance advice of 21 April'.")


class ResolveForm(forms.Form):
    reason = forms.CharField(max_length=1000, label="Reason", widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="E.g. 'refunded to the payer on 22 April, bank ref …'.")
