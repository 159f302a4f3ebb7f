"""Forms of the approval screens: input shape only; the services decide what is allowed."""

from __future__ import annotations

import datetime

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from approvals.services.delegations import delegate_choices

# --- decisions --------------------------------------------------------------------------------------


class DecisionForm(forms.Form):
    """Approve or reject the open step the screen showed (`step`), with a comment (a reason to reject)."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    comment = forms.CharField(required=False, max_length=1000, strip=True)
    step = forms.IntegerField(required=False, min_value=1)


class ReasonForm(forms.Form):
    """A reason (rejections) or comment (approvals); the services refuse a blank reason themselves."""

    reason = forms.CharField(required=False, max_length=1000, strip=True)
    evidence = forms.CharField(required=False, max_length=4000, strip=True)


# --- delegation -------------------------------------------------------------------------------------


class DelegationForm(forms.Form):
    delegate = forms.ModelChoiceField(queryset=get_user_model().objects.none(), empty_label="Choose a colleague")
    starts_on = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    ends_on = forms.DateField(label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    reason = forms.CharField(max_length=200, required=False, help_text="E.g. holiday; your delegate sees it.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # Only eligible delegates are offered; the service refuses the others anyway.
        self.fields["delegate"].queryset = delegate_choices(delegator=user)
        self.fields["delegate"].label_from_instance = lambda u: u.get_full_name() or u.get_username()
        if not self.is_bound:
            today = timezone.localdate()
            self.initial.setdefault("starts_on", today)
            self.initial.setdefault("ends_on", today + datetime.timedelta(days=6))
