"""Forms of the collections screens: input shape only; the services decide what is allowed."""

from __future__ import annotations

import datetime

from django import forms

from disputes.selectors.collections import BUCKET_KEYS

DATE_WIDGET = {"widget": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")}


class AgingFilterForm(forms.Form):
    """As-of date, entity, currency, overdue only; and the drill-down cell (client, bucket)."""

    as_of = forms.DateField(label="As of", required=False, **DATE_WIDGET)
    entity = forms.ChoiceField(label="Entity", required=False)
    currency = forms.CharField(
        label="Currency", required=False, max_length=3, widget=forms.TextInput(attrs={"size": 4, "placeholder": "All"})
    )
    overdue = forms.ChoiceField(
        label="Show", required=False, choices=[("", "All open items"), ("yes", "Overdue only")]
    )
    q = forms.CharField(
        label="Client", required=False, max_length=100,
        widget=forms.TextInput(attrs={"size": 14, "placeholder": "Code or name", "type": "search"}),
    )
    client = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    bucket = forms.ChoiceField(
        required=False, choices=[("", ""), ("all", "all"), *((k, k) for k in BUCKET_KEYS)], widget=forms.HiddenInput
    )

    def __init__(self, *args, entities: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["entity"].choices = [("", "All entities"), *((e.code, e.code) for e in entities or [])]

    def clean_currency(self) -> str:
        return (self.cleaned_data.get("currency") or "").strip().upper()

    def clean_q(self) -> str:
        return (self.cleaned_data.get("q") or "").strip()


class StatementForm(forms.Form):
    as_of = forms.DateField(label="As of", required=False, **DATE_WIDGET)
    since = forms.DateField(label="Activity since", required=False, **DATE_WIDGET)

    def clean(self):
        data = super().clean()
        as_of, since = data.get("as_of"), data.get("since")
        if as_of and since and since > as_of:
            self.add_error("since", "Must be on or before the as-of date.")
        return data


class HandoffForm(forms.Form):
    assignee = forms.CharField(
        label="Handed to", required=False, max_length=200,
        help_text="The agency, law firm or account manager who takes it over.",
    )
    reason = forms.CharField(
        label="Reason", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why reminders are not enough (the service requires it).",
    )


class HandoffCloseForm(forms.Form):
    note = forms.CharField(label="Outcome", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class CollectionsProfileForm(forms.Form):
    in_payment_plan = forms.BooleanField(label="In a payment plan (no reminders)", required=False)
    payment_plan_note = forms.CharField(
        label="Plan terms", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What was agreed: amounts, dates, who agreed.",
    )
    dunning_offsets = forms.CharField(
        label="Reminder days after due", required=False, max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "Firm default", "size": 12}),
        help_text="E.g. 7, 21, 45; empty for the firm's default.",
    )
    reason = forms.CharField(label="Why", required=False, max_length=500)


def parse_date(value: str | None, default: datetime.date) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value) if value else default
    except ValueError:
        return default
