"""Forms of the customer portal (thin: parsing only)."""

from __future__ import annotations

from typing import Any

from django import forms

from billing.models import InvoiceLine
from disputes.models import Dispute


class LoginForm(forms.Form):
    email = forms.EmailField(max_length=254)
    password = forms.CharField(widget=forms.PasswordInput, max_length=256)


class TokenForm(forms.Form):
    token = forms.CharField(max_length=10, label="Code from your authenticator app")


class EmailForm(forms.Form):
    email = forms.EmailField(max_length=254)


class SetPasswordForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, max_length=256, label="New password")
    password2 = forms.CharField(widget=forms.PasswordInput, max_length=256, label="Repeat the password")

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password2"):
            raise forms.ValidationError("The two passwords differ.")
        return data


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented pattern): a list of uploads, possibly empty."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(d, initial) for d in data]
        return [single(data, initial)] if data else []


class DisputeForm(forms.Form):
    category = forms.ChoiceField(choices=Dispute.Category.choices)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=5000, label="What is wrong")
    attachments = MultipleFileField(required=False)

    def __init__(self, *args: Any, lines: list[InvoiceLine], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines = lines
        for line in lines:
            self.fields[f"line_{line.pk}"] = forms.BooleanField(required=False, label=f"Line {line.position}")

    def line_rows(self):
        return [{"line": line, "tick": self[f"line_{line.pk}"]} for line in self.lines]

    def selected_lines(self):
        return [(line, line.amount) for line in self.lines if self.cleaned_data.get(f"line_{line.pk}")]


class NoteForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000, label="Your message")
    attachment = forms.FileField(required=False)


class SignForm(forms.Form):
    signer_name = forms.CharField(max_length=200, label="Your full name")
    agree = forms.BooleanField(required=False, label="I have read this change order and sign it")


class DeclineForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000, label="Why you decline")


class SignoffForm(forms.Form):
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000, required=False)
