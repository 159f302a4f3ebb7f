"""Read endpoints of billing (scope read:billing): invoices, credit notes, payments, disputes, exceptions.

Each list is filtered with django-filter, cursor-paginated, and fetched in a fixed number of
queries (select_related for the codes, prefetch for lines/taxes), whatever the page holds.
"""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation

from billing.models import Invoice, InvoiceDocument, InvoiceException, InvoiceLine, Payment
from billing.services.documents import invoice_document
from disputes.models import Dispute
from integrations.api.base import ApiListView, ApiRetrieveView, ApiView
from integrations.api.filters import CodeListFilter, UtcIsoDateTimeFilter, split_codes
from integrations.api.serializers import (
    DisputeSerializer,
    InvoiceExceptionSerializer,
    InvoiceSerializer,
    PaymentSerializer,
)
from kernel.errors import ApplicationError
from kernel.http import stored_file_response

READ = {"GET": ["read:billing"]}


# --- invoices and credit notes -----------------------------------------------------------------------


class InvoiceFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Invoice.Status.choices)
    client = CodeListFilter(field_name="client__code", help_text="Client code(s), comma-separated.")
    entity = CodeListFilter(field_name="entity__code", help_text="Legal entity code(s), comma-separated.")
    contract = CodeListFilter(field_name="contract__code", help_text="Contract number(s), comma-separated.")
    number = django_filters.CharFilter(field_name="number")
    issue_date_from = django_filters.DateFilter(field_name="issue_date", lookup_expr="gte")
    issue_date_to = django_filters.DateFilter(field_name="issue_date", lookup_expr="lte")
    updated_since = UtcIsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte", help_text="ISO 8601; changed at or after this time."
    )
    billing_run = django_filters.NumberFilter(field_name="billing_run_id")

    class Meta:
        model = Invoice
        fields = [
            "status", "client", "entity", "contract", "number", "issue_date_from", "issue_date_to",
            "updated_since", "billing_run",
        ]


def invoices_for_api(kind: str) -> QuerySet[Invoice]:
    """Invoices (or credit notes) with everything the serializer reads, in four queries a page."""
    return (
        Invoice.objects.filter(kind=kind)
        .select_related("entity", "client", "contract", "project", "credit_of")
        .prefetch_related(
            Prefetch(
                "lines", queryset=InvoiceLine.objects.select_related("project", "role").order_by("position", "id")
            ),
            "taxes",
        )
    )


class _InvoiceList(ApiListView):
    required_scopes = READ
    serializer_class = InvoiceSerializer
    filterset_class = InvoiceFilter
    kind = Invoice.Kind.INVOICE

    def get_queryset(self):
        return invoices_for_api(self.kind)


class _InvoiceDetail(ApiRetrieveView):
    required_scopes = READ
    serializer_class = InvoiceSerializer
    kind = Invoice.Kind.INVOICE

    def get_queryset(self):
        return invoices_for_api(self.kind)


@extend_schema(tags=["invoices"], summary="Invoices with lines, taxes, credited/paid amounts and balance")
class InvoiceListView(_InvoiceList):
    pass


@extend_schema(tags=["invoices"], summary="An invoice")
class InvoiceDetailView(_InvoiceDetail):
    pass


@extend_schema(tags=["credit notes"], summary="Credit notes (credit_of: the credited invoice's number)")
class CreditNoteListView(_InvoiceList):
    kind = Invoice.Kind.CREDIT_NOTE


@extend_schema(tags=["credit notes"], summary="A credit note")
class CreditNoteDetailView(_InvoiceDetail):
    kind = Invoice.Kind.CREDIT_NOTE


# --- documents ---------------------------------------------------------------------------------------


class FirstRendererNegotiation(BaseContentNegotiation):
    """Documents are bytes whatever `Accept` says; errors stay JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _DocumentView(ApiView):
    """The stored issued document (rendered and stored on the first request), as the portal serves it."""

    required_scopes = READ
    content_negotiation_class = FirstRendererNegotiation
    document_kind = ""

    def get(self, request, pk: int):
        invoice = Invoice.objects.filter(pk=pk).only("id", "number").first()
        if invoice is None:
            raise Http404
        if not invoice.number:
            raise ApplicationError(
                "Documents exist for numbered (approved) invoices only.", code="not_found"
            )
        document = invoice_document(invoice=invoice, kind=self.document_kind, user=request.user)
        return stored_file_response(
            document.content,
            content_type=document.content_type,
            filename=document.filename,
            sha256=document.sha256,
            attachment=True,
        )


class InvoicePdfView(_DocumentView):
    document_kind = InvoiceDocument.Kind.PDF

    @extend_schema(
        tags=["invoices"],
        summary="The invoice PDF",
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The PDF.")},
    )
    def get(self, request, pk: int):
        return super().get(request, pk)


class InvoiceUblView(_DocumentView):
    document_kind = InvoiceDocument.Kind.UBL

    @extend_schema(
        tags=["invoices"],
        summary="The invoice as a UBL 2.1 e-invoice (EN 16931)",
        responses={(200, "application/xml"): OpenApiResponse(OpenApiTypes.BINARY, description="UBL XML.")},
    )
    def get(self, request, pk: int):
        return super().get(request, pk)


# --- payments ----------------------------------------------------------------------------------------


class PaymentFilter(django_filters.FilterSet):
    client = CodeListFilter(field_name="client__code", help_text="Client code(s), comma-separated.")
    entity = CodeListFilter(field_name="invoice__entity__code", help_text="Entity code(s) of the invoice.")
    invoice = django_filters.CharFilter(field_name="invoice__number", help_text="Invoice number.")
    source = django_filters.ChoiceFilter(choices=Payment.Source.choices)
    external_reference = django_filters.CharFilter()
    date_from = django_filters.DateFilter(field_name="date", lookup_expr="gte")
    date_to = django_filters.DateFilter(field_name="date", lookup_expr="lte")
    unapplied = django_filters.BooleanFilter(field_name="invoice", lookup_expr="isnull", help_text="No invoice.")
    updated_since = UtcIsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Payment
        fields = [
            "client", "entity", "invoice", "source", "external_reference", "date_from", "date_to", "unapplied",
            "updated_since",
        ]


@extend_schema(tags=["payments"], summary="Payments received (unapplied cash has no invoice)")
class PaymentListView(ApiListView):
    required_scopes = READ
    serializer_class = PaymentSerializer
    filterset_class = PaymentFilter
    queryset = Payment.objects.select_related("invoice", "client", "recorded_by")


@extend_schema(tags=["payments"], summary="A payment")
class PaymentDetailView(ApiRetrieveView):
    required_scopes = READ
    serializer_class = PaymentSerializer
    queryset = Payment.objects.select_related("invoice", "client", "recorded_by")


# --- disputes ----------------------------------------------------------------------------------------


class DisputeFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Dispute.Status.choices)
    category = django_filters.MultipleChoiceFilter(choices=Dispute.Category.choices)
    client = CodeListFilter(field_name="invoice__client__code", help_text="Client code(s), comma-separated.")
    entity = CodeListFilter(field_name="invoice__entity__code", help_text="Entity code(s), comma-separated.")
    invoice = django_filters.CharFilter(field_name="invoice__number", help_text="Invoice number.")
    opened_from = UtcIsoDateTimeFilter(field_name="opened_at", lookup_expr="gte")
    opened_to = UtcIsoDateTimeFilter(field_name="opened_at", lookup_expr="lte")

    class Meta:
        model = Dispute
        fields = ["status", "category", "client", "entity", "invoice", "opened_from", "opened_to"]


def disputes_for_api() -> QuerySet[Dispute]:
    return Dispute.objects.select_related(
        "invoice__client", "owner", "opened_by", "resolved_by", "credit_note"
    ).prefetch_related("lines")


@extend_schema(tags=["disputes"], summary="Disputes")
class DisputeListView(ApiListView):
    required_scopes = READ
    serializer_class = DisputeSerializer
    filterset_class = DisputeFilter

    def get_queryset(self):
        return disputes_for_api()


@extend_schema(tags=["disputes"], summary="A dispute")
class DisputeDetailView(ApiRetrieveView):
    required_scopes = READ
    serializer_class = DisputeSerializer

    def get_queryset(self):
        return disputes_for_api()


# --- exceptions --------------------------------------------------------------------------------------


class ExceptionFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(
        choices=InvoiceException.State.choices, help_text="Default: open only."
    )
    code = CodeListFilter(field_name="code", help_text="Exception code(s), comma-separated, e.g. CAP_EXCEEDED.")
    severity = django_filters.ChoiceFilter(choices=InvoiceException.Severity.choices)
    follow_up = django_filters.BooleanFilter(
        method="filter_follow_up", help_text="Raised after issue (cash, delivery)."
    )
    client = django_filters.CharFilter(method="filter_client", help_text="Client code(s), comma-separated.")
    entity = CodeListFilter(field_name="invoice__entity__code", help_text="Entity code(s), comma-separated.")
    invoice = django_filters.NumberFilter(field_name="invoice_id", help_text="Invoice id.")
    updated_since = UtcIsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = InvoiceException
        fields = ["state", "code", "severity", "follow_up", "client", "entity", "invoice", "updated_since"]

    def filter_follow_up(self, qs, name, value):
        if value is None:
            return qs
        follow_up = Q(code__in=InvoiceException.FOLLOW_UP_CODES)
        return qs.filter(follow_up) if value else qs.exclude(follow_up)

    def filter_client(self, qs, name, value):
        codes = split_codes(value)
        return qs.filter(Q(invoice__client__code__in=codes) | Q(payment__client__code__in=codes)) if codes else qs


@extend_schema(
    tags=["exceptions"],
    summary="Invoice exceptions (open by default), including the follow-ups raised after issue",
)
class ExceptionListView(ApiListView):
    required_scopes = READ
    serializer_class = InvoiceExceptionSerializer
    filterset_class = ExceptionFilter

    def get_queryset(self):
        queryset = InvoiceException.objects.select_related(
            "invoice__client", "payment__client", "resolved_by"
        )
        if "state" not in self.request.query_params:
            queryset = queryset.filter(state=InvoiceException.State.OPEN)
        return queryset
