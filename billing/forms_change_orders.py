"""The PM's change-order form: a contract amendment's description, cap change, new role rates and milestones.

Input shape only; `billing.services.change_orders.change_order_draft_save` decides who may raise one,
on which contract, and what a draft may hold.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms

from billing.models import Contract, Project, Role

#: Rows for new rates and milestones on the form (blank rows are ignored).
RATE_ROWS = 3
MILESTONE_ROWS = 2


class ChangeOrderForm(forms.Form):
    contract = forms.ModelChoiceField(queryset=Contract.objects.none(), empty_label="Choose a contract",
                                      help_text="A contract of one of your projects.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000,
                                  help_text="What changes, and why (the client's request, the signed amendment).")
    cap_delta = forms.DecimalField(label="Cap change", max_digits=18, decimal_places=2, initial=Decimal("0"),
                                   required=False, help_text="Added to the contract's cap (negative lowers it).")
    signed_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                                help_text="When the client signed the amendment, if it is signed.")

    def __init__(self, *args, contracts, fixed_contract: Contract | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["contract"].queryset = contracts
        if fixed_contract is not None:  # editing a draft: its contract stays
            self.fields["contract"].disabled = True
            self.fields["contract"].initial = fixed_contract.pk

    def clean_cap_delta(self) -> Decimal:
        return self.cleaned_data.get("cap_delta") or Decimal("0")


class RateRowForm(forms.Form):
    role = forms.ModelChoiceField(queryset=Role.objects.order_by("code"), required=False, empty_label="Role")
    rate = forms.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    effective_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    effective_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean()
        filled = [data.get(k) not in (None, "") for k in ("role", "rate", "effective_from")]
        if any(filled) and not all(filled):
            raise forms.ValidationError("A new rate needs a role, a rate and the date it applies from.")
        start, end = data.get("effective_from"), data.get("effective_to")
        if start and end and end < start:
            raise forms.ValidationError("A rate cannot end before it starts.")
        return data

    @property
    def is_filled(self) -> bool:
        return bool(self.cleaned_data.get("role"))


class MilestoneRowForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.none(), required=False, empty_label="Project")
    name = forms.CharField(max_length=200, required=False)
    amount = forms.DecimalField(max_digits=18, decimal_places=2, min_value=0, required=False)
    due_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, projects, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects

    def clean(self) -> dict:
        data = super().clean()
        filled = [data.get(k) not in (None, "") for k in ("project", "name", "amount")]
        if any(filled) and not all(filled):
            raise forms.ValidationError("A new milestone needs a project, a name and an amount.")
        return data

    @property
    def is_filled(self) -> bool:
        return bool(self.cleaned_data.get("project"))


RateRows = forms.formset_factory(RateRowForm, extra=RATE_ROWS, max_num=20)
MilestoneRows = forms.formset_factory(MilestoneRowForm, extra=MILESTONE_ROWS, max_num=20)
