"""Disputes of an invoice: list them (read:billing), open one (write:disputes) via `disputes.services.dispute_open`."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from billing.models import Invoice, InvoiceLine
from disputes.services import dispute_open
from integrations.api.base import ApiListView, validate
from integrations.api.billing_reads import disputes_for_api
from integrations.api.serializers import DisputeOpenSerializer, DisputeSerializer


class InvoiceDisputesView(ApiListView):
    """The disputes of one invoice; POST opens one (the invoice becomes `disputed`, dunning stops)."""

    required_scopes = {"GET": ["read:billing"], "POST": ["write:disputes"]}
    serializer_class = DisputeSerializer
    filterset_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no URL kwargs
            return disputes_for_api().none()
        return disputes_for_api().filter(invoice_id=self.kwargs["pk"])

    @extend_schema(tags=["disputes"], summary="Disputes of an invoice")
    def get(self, request, *args, **kwargs):
        if not Invoice.objects.filter(pk=kwargs["pk"]).exists():
            raise Http404
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["disputes"],
        summary="Open a dispute on an invoice",
        request=DisputeOpenSerializer,
        responses={201: DisputeSerializer},
    )
    def post(self, request, *args, **kwargs):
        invoice = Invoice.objects.filter(pk=kwargs["pk"]).first()
        if invoice is None:
            raise Http404
        data = validate(DisputeOpenSerializer, request.data)
        owner = None
        if data["owner"]:
            owner = get_user_model().objects.filter(username=data["owner"], is_active=True).first()
            if owner is None:
                raise ValidationError({"owner": [f"No active user {data['owner']!r}."]})
        wanted = {item["invoice_line"]: item["amount"] for item in data["lines"]}
        if len(wanted) != len(data["lines"]):
            raise ValidationError({"lines": ["A line is listed twice."]})
        lines = {line.pk: line for line in InvoiceLine.objects.filter(invoice_id=invoice.pk, pk__in=list(wanted))}
        unknown = [pk for pk in wanted if pk not in lines]
        if unknown:
            raise ValidationError({"lines": [f"Not a line of this invoice: {', '.join(map(str, unknown))}."]})
        dispute = dispute_open(
            invoice=invoice,
            category=data["category"],
            disputed_amount=data["disputed_amount"],
            user=request.user,
            owner=owner,
            due_date=data["due_date"],
            customer_reference=data["customer_reference"],
            description=data["description"],
            lines=[(lines[pk], amount) for pk, amount in wanted.items()] or None,
            source="api",
        )
        dispute = disputes_for_api().get(pk=dispute.pk)
        return Response(
            DisputeSerializer(dispute).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:dispute_detail", args=[dispute.pk])},
        )
