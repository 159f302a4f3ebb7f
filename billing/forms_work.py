"""Forms of billing's work screens (timesheet, expenses): input shape only; the services decide what is allowed."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing.models import Expense, Project
from billing.models.work import MAX_HOURS_PER_DAY

WEEK_RE = re.compile(r"^(\d{4})-W(\d{1,2})$")
MAX_RECEIPT_BYTES = 10 * 1024 * 1024
#: Receipt types: extension → the file's first bytes (checked, not trusted from the browser).
RECEIPT_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "pdf": (b"%PDF-",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
}


# --- weeks ------------------------------------------------------------------------------------------


def parse_week(value: str | None, *, default: datetime.date | None = None) -> datetime.date:
    """`2026-W44` → the Monday of ISO week 44 of 2026; empty or invalid → the week of `default` (today)."""
    match = WEEK_RE.match((value or "").strip())
    if match:
        try:
            return datetime.date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            pass
    day = default or timezone.localdate()
    return day - datetime.timedelta(days=day.weekday())


def week_key(monday: datetime.date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


# --- timesheet --------------------------------------------------------------------------------------


def cell_name(project_id: int, day: datetime.date) -> str:
    return f"h-{project_id}-{day.isoformat()}"


def parse_hours(raw: str | None) -> Decimal | None:
    """An hours cell: blank → 0; `7,5` or `7.5` → 7.5; None when it is not a number 0–24 with ≤ 2 decimals."""
    text = (raw or "").strip().replace(",", ".")
    if not text:
        return Decimal("0")
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    if not value.is_finite() or value < 0 or value > MAX_HOURS_PER_DAY or value.as_tuple().exponent < -2:
        return None
    return value


# --- expenses ---------------------------------------------------------------------------------------


def check_receipt(upload) -> None:
    """Size and type of a receipt: PDF, PNG or JPEG up to 10 MB, recognised by its content."""
    if upload.size > MAX_RECEIPT_BYTES:
        raise ValidationError(f"The receipt is {upload.size / 1024 / 1024:.1f} MB; the limit is 10 MB.")
    extension = upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
    if extension not in RECEIPT_SIGNATURES:
        raise ValidationError("Upload the receipt as a PDF, PNG or JPEG file.")
    head = upload.read(16)
    upload.seek(0)
    if not head.startswith(RECEIPT_SIGNATURES[extension]):
        raise ValidationError(f"The file is not a valid {extension.upper()} (its content does not match its name).")


class ExpenseForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.none(), empty_label="Choose a project")
    date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    category = forms.ChoiceField(choices=Expense.Category.choices)
    amount = forms.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"))
    currency = forms.CharField(
        max_length=3,
        min_length=3,
        help_text="The receipt's currency (ISO code); finance converts it when billing.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "class": "input-ccy"}),
    )
    description = forms.CharField(max_length=500, required=False)
    billable = forms.BooleanField(required=False, initial=True, help_text="Re-invoiced to the client.")
    receipt = forms.FileField(
        required=False,
        help_text="PDF, PNG or JPEG, up to 10 MB.",
        widget=forms.FileInput(attrs={"accept": ".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg"}),
    )

    def __init__(self, *args, projects=None, receipt_required: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects if projects is not None else Project.objects.none()
        self.fields["project"].label_from_instance = lambda p: f"{p.code} · {p.name}"
        self.fields["receipt"].required = receipt_required
        if receipt_required:
            self.fields["receipt"].help_text = "Required. " + self.fields["receipt"].help_text

    def clean_currency(self) -> str:
        currency = self.cleaned_data["currency"].strip().upper()
        if not currency.isalpha():
            raise ValidationError("Three letters, e.g. EUR.")
        return currency

    def clean_receipt(self):
        upload = self.cleaned_data.get("receipt")
        if upload:
            check_receipt(upload)
        return upload
