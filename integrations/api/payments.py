"""POST /api/v1/payments/ (scope write:payments): record a payment through `payment_record`.

The list (GET, read:billing) is `billing_reads.PaymentListView`; this view extends it with POST so
both live on one path. Every POST carries an `Idempotency-Key` (the base view replays the first
answer); on top of that the payment's own `external_reference` is idempotent in the service:
the same reference and data answer 200 with the payment already recorded, other data 409.
"""

from __future__ import annotations

from decimal import Decimal

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from billing.models import Client, InvoiceException, Payment
from billing.services.payments import MAX_REFERENCE, payment_family, payment_record
from integrations.api.base import validate
from integrations.api.billing_reads import READ, PaymentListView
from integrations.api.serializers import PaymentSerializer


class PaymentInSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"),
                                      help_text="Cash received, in `currency`.")
    currency = serializers.RegexField(r"^[A-Z]{3}$", help_text="ISO 4217, e.g. EUR.")
    date = serializers.DateField(help_text="Value date.")
    external_reference = serializers.CharField(max_length=MAX_REFERENCE,
                                               help_text="The payment's own id (bank or provider): one payment, once.")
    invoice_number = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                           help_text="The invoice it pays, as the payer quoted it.")
    client = serializers.CharField(max_length=30, required=False, allow_blank=True, default="",
                                   help_text="Client code of the payer, for cash that names no known invoice.")
    note = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class PaymentExceptionOutSerializer(serializers.Serializer):
    code = serializers.CharField()
    state = serializers.CharField()
    message = serializers.CharField()
    payment_reference = serializers.CharField(source="payment.external_reference")
    amount = serializers.DecimalField(source="payment.amount", max_digits=18, decimal_places=2)


class PaymentRecordedSerializer(PaymentSerializer):
    """The payment (the family's first row) and the exceptions it opened for finance, if any."""

    exceptions = serializers.SerializerMethodField()

    class Meta(PaymentSerializer.Meta):
        fields = [*PaymentSerializer.Meta.fields, "exceptions"]
        read_only_fields = fields

    @extend_schema_field(PaymentExceptionOutSerializer(many=True))
    def get_exceptions(self, payment: Payment) -> list[dict]:
        family = payment_family(payment.external_reference)
        rows = InvoiceException.objects.filter(payment__in=family).select_related("payment").order_by("id")
        return PaymentExceptionOutSerializer(rows, many=True).data


class PaymentListCreateView(PaymentListView):
    """Payments received; POST records one (webhook-less providers, ERP middleware, bank imports)."""

    required_scopes = {**READ, "POST": ["write:payments"]}

    @extend_schema(
        tags=["payments"],
        summary="Record a payment",
        description="Applied to the invoice it names when it can be; otherwise kept as unapplied cash with an "
        "exception for finance (unknown invoice, other currency, more than the balance, credited or cancelled "
        "invoice). The same `external_reference` with the same data answers 200 with the payment recorded "
        "before; with other data 409.",
        request=PaymentInSerializer,
        responses={
            201: OpenApiResponse(PaymentRecordedSerializer, description="Recorded."),
            200: OpenApiResponse(PaymentRecordedSerializer, description="Recorded before (same reference and data)."),
        },
    )
    def post(self, request, *args, **kwargs):
        data = validate(PaymentInSerializer, request.data)
        payer = None
        if data["client"]:
            payer = Client.objects.filter(code=data["client"]).first()
            if payer is None:
                raise ValidationError({"client": [f"No client {data['client']!r}."]})
        existed = Payment.objects.filter(external_reference=data["external_reference"].strip()).exists()
        payment = payment_record(
            amount=data["amount"],
            currency=data["currency"],
            date=data["date"],
            external_reference=data["external_reference"],
            source=Payment.Source.API,
            user=request.user,
            invoice_reference=data["invoice_number"],
            client=payer,
            note=data["note"],
        )
        payment = Payment.objects.select_related("invoice", "client", "recorded_by").get(pk=payment.pk)
        return Response(
            PaymentRecordedSerializer(payment).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
            headers={"Location": reverse("api:payment_detail", args=[payment.pk])},
        )
