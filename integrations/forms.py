"""Forms of the integration screens: the CSV time import."""

from __future__ import annotations

from django import forms

from integrations.services.csv_import import MAX_CSV_BYTES, MAX_CSV_ROWS


class TimeImportForm(forms.Form):
    file = forms.FileField(
        label="PSA time export (CSV)",
        help_text=f"UTF-8, header on line 1; up to {MAX_CSV_ROWS:,} rows and {MAX_CSV_BYTES // (1024 * 1024)} MB.",
    )
    source = forms.SlugField(
        max_length=30, initial="psa", label="Source", help_text="The system the external ids come from."
    )
    partial = forms.BooleanField(
        required=False, label="Keep the good rows", help_text="Off: any error imports nothing (recommended)."
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_CSV_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB; split it.")
        return upload


class ImportCheckedForm(forms.Form):
    partial = forms.BooleanField(required=False, label="Keep the good rows")
