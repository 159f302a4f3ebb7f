"""Forms of the assistive screens (SOW upload and decisions)."""

from __future__ import annotations

from django import forms


class SowUploadForm(forms.Form):
    document = forms.FileField(
        label="Statement of work",
        help_text="PDF with a text layer (up to 50 pages), or a .txt file; up to 10 MB. It is read in the background.",
    )

    def clean_document(self):
        document = self.cleaned_data["document"]
        name = document.name.lower()
        if not (name.endswith(".pdf") or name.endswith(".txt")):
            raise forms.ValidationError("Upload a PDF or a .txt file.")
        return document


class SowDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("accept", "Accept"), ("reject", "Reject")])
    reason = forms.CharField(
        required=False, max_length=300, label="Reason (required to accept; kept in the contract's history)"
    )
