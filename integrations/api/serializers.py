"""Serializers of the core API (billing reads and actions): shapes only, no rules."""

from __future__ import annotations

from decimal import Decimal

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import BillingRun, Invoice, InvoiceException, InvoiceLine, InvoiceTax, Payment
from disputes.models import Dispute, DisputeLine
from kernel.periods import month_bounds


class BillingRunSerializer(serializers.ModelSerializer):
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    summary = serializers.JSONField(read_only=True, help_text="Invoices made, totals and exceptions (when done).")

    class Meta:
        model = BillingRun
        fields = [
            "id",
            "status",
            "period_start",
            "period_end",
            "run_date",
            "contract_codes",
            "started_by",
            "created_at",
            "started_at",
            "finished_at",
            "contracts_total",
            "contracts_done",
            "heartbeat_at",
            "resumes",
            "summary",
            "error",
        ]
        read_only_fields = fields


class BillingRunStartSerializer(serializers.Serializer):
    period = serializers.RegexField(
        r"^\d{4}-(0[1-9]|1[0-2])$", help_text="The month to bill, YYYY-MM; approved work up to its last day."
    )
    run_date = serializers.DateField(help_text="Issue date of the invoices.")
    contract_codes = serializers.ListField(
        child=serializers.CharField(max_length=60), required=False, default=list, max_length=1000,
        help_text="Optional contract numbers; empty: every contract.",
    )

    def validate(self, attrs: dict) -> dict:
        year, month = (int(part) for part in attrs["period"].split("-"))
        if year < 2000 or year > 2100:
            raise serializers.ValidationError({"period": ["Choose a month between 2000 and 2100."]})
        attrs["period_start"], attrs["period_end"] = month_bounds(year, month)
        return attrs


# --- invoices and credit notes -----------------------------------------------------------------------


class InvoiceLineSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.code", allow_null=True, default=None, read_only=True)
    role = serializers.CharField(source="role.code", allow_null=True, default=None, read_only=True)
    credited_line = serializers.IntegerField(source="credited_line_id", allow_null=True, read_only=True)

    class Meta:
        model = InvoiceLine
        fields = [
            "id",
            "position",
            "kind",
            "project",
            "role",
            "description",
            "quantity",
            "unit_price",
            "amount",
            "rate_source",
            "service_start",
            "service_end",
            "credited_line",
        ]
        read_only_fields = fields


class InvoiceTaxSerializer(serializers.ModelSerializer):
    class Meta:
        model = InvoiceTax
        fields = ["category", "rate", "base", "amount", "legal_note"]
        read_only_fields = fields


class DocumentLinksSerializer(serializers.Serializer):
    pdf = serializers.CharField(allow_null=True)
    ubl = serializers.CharField(allow_null=True)


class InvoiceSerializer(serializers.ModelSerializer):
    """An invoice or credit note with its lines and taxes; credited, paid and the open balance."""

    entity = serializers.CharField(source="entity.code", read_only=True)
    client = serializers.CharField(source="client.code", read_only=True)
    client_name = serializers.CharField(source="client.legal_name", read_only=True)
    contract = serializers.CharField(source="contract.code", read_only=True)
    project = serializers.CharField(source="project.code", allow_null=True, default=None, read_only=True)
    billing_run = serializers.IntegerField(source="billing_run_id", allow_null=True, read_only=True)
    credit_of = serializers.CharField(source="credit_of.number", allow_null=True, default=None, read_only=True)
    balance = serializers.DecimalField(max_digits=18, decimal_places=2, read_only=True)
    lines = InvoiceLineSerializer(many=True, read_only=True)
    taxes = InvoiceTaxSerializer(many=True, read_only=True)
    documents = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "kind",
            "status",
            "entity",
            "client",
            "client_name",
            "contract",
            "project",
            "billing_run",
            "credit_of",
            "period_start",
            "period_end",
            "service_start",
            "service_end",
            "issue_date",
            "due_date",
            "currency",
            "po_number",
            "subtotal",
            "tax_total",
            "total",
            "credited_amount",
            "paid_amount",
            "balance",
            "approved_at",
            "erp_id",
            "created_at",
            "updated_at",
            "lines",
            "taxes",
            "documents",
        ]
        read_only_fields = fields

    @extend_schema_field(DocumentLinksSerializer)
    def get_documents(self, invoice: Invoice) -> dict:
        """Download links of the issued documents (numbered invoices only)."""
        if not invoice.number:
            return {"pdf": None, "ubl": None}
        return {
            "pdf": reverse("api:invoice_pdf", args=[invoice.pk]),
            "ubl": reverse("api:invoice_ubl", args=[invoice.pk]),
        }


# --- payments, disputes, exceptions ------------------------------------------------------------------


class PaymentSerializer(serializers.ModelSerializer):
    invoice = serializers.IntegerField(source="invoice_id", allow_null=True, read_only=True)
    invoice_number = serializers.CharField(source="invoice.number", allow_null=True, default=None, read_only=True)
    client = serializers.CharField(source="client.code", allow_null=True, default=None, read_only=True)
    recorded_by = serializers.CharField(source="recorded_by.username", allow_null=True, default=None, read_only=True)

    class Meta:
        model = Payment
        fields = [
            "id",
            "invoice",
            "invoice_number",
            "client",
            "amount",
            "currency",
            "date",
            "external_reference",
            "source",
            "invoice_reference",
            "note",
            "recorded_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DisputeLineSerializer(serializers.ModelSerializer):
    invoice_line = serializers.IntegerField(source="invoice_line_id", read_only=True)

    class Meta:
        model = DisputeLine
        fields = ["invoice_line", "amount"]
        read_only_fields = fields


class DisputeSerializer(serializers.ModelSerializer):
    invoice = serializers.IntegerField(source="invoice_id", read_only=True)
    invoice_number = serializers.CharField(source="invoice.number", allow_null=True, read_only=True)
    client = serializers.CharField(source="invoice.client.code", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    opened_by = serializers.CharField(source="opened_by.username", read_only=True)
    resolved_by = serializers.CharField(source="resolved_by.username", allow_null=True, default=None, read_only=True)
    credit_note = serializers.CharField(source="credit_note.number", allow_null=True, default=None, read_only=True)
    lines = DisputeLineSerializer(many=True, read_only=True)

    class Meta:
        model = Dispute
        fields = [
            "id",
            "invoice",
            "invoice_number",
            "client",
            "category",
            "disputed_amount",
            "currency",
            "status",
            "outcome",
            "owner",
            "due_date",
            "customer_reference",
            "description",
            "source",
            "opened_by",
            "opened_at",
            "resolved_by",
            "resolved_at",
            "resolution_note",
            "credit_note",
            "lines",
        ]
        read_only_fields = fields


class DisputeLineInSerializer(serializers.Serializer):
    invoice_line = serializers.IntegerField(min_value=1, help_text="Id of a line of this invoice.")
    amount = serializers.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"))


class DisputeOpenSerializer(serializers.Serializer):
    category = serializers.ChoiceField(choices=Dispute.Category.choices)
    disputed_amount = serializers.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"))
    customer_reference = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    description = serializers.CharField(max_length=5000, required=False, default="", allow_blank=True)
    due_date = serializers.DateField(required=False, allow_null=True, default=None)
    owner = serializers.CharField(
        max_length=150, required=False, allow_null=True, default=None,
        help_text="Username of the finance or collections person who works it (else the client's service user).",
    )
    lines = DisputeLineInSerializer(many=True, required=False, default=list, max_length=500)


class InvoiceExceptionSerializer(serializers.ModelSerializer):
    invoice = serializers.IntegerField(source="invoice_id", allow_null=True, read_only=True)
    invoice_number = serializers.SerializerMethodField()
    client = serializers.SerializerMethodField()
    payment = serializers.IntegerField(source="payment_id", allow_null=True, read_only=True)
    resolved_by = serializers.CharField(source="resolved_by.username", allow_null=True, default=None, read_only=True)
    follow_up = serializers.SerializerMethodField()

    class Meta:
        model = InvoiceException
        fields = [
            "id",
            "invoice",
            "invoice_number",
            "client",
            "payment",
            "code",
            "severity",
            "message",
            "fix_hint",
            "amount",
            "state",
            "follow_up",
            "resolved_by",
            "resolved_at",
            "resolution_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_invoice_number(self, exc: InvoiceException) -> str | None:
        return exc.invoice.display_number if exc.invoice_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_client(self, exc: InvoiceException) -> str | None:
        if exc.invoice_id:
            return exc.invoice.client.code
        if exc.payment_id and exc.payment.client_id:
            return exc.payment.client.code
        return None

    @extend_schema_field(serializers.BooleanField())
    def get_follow_up(self, exc: InvoiceException) -> bool:
        """Raised after issue (delivery, cash) rather than by the billing run's validation."""
        return exc.code in InvoiceException.FOLLOW_UP_CODES
