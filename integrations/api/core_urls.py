"""Core API routes: schema and docs, billing reads, billing runs, documents, disputes (namespace `api`)."""

from django.urls import path

from integrations.api import billing_reads as reads
from integrations.api import billing_runs, disputes, docs, payments, whoami

urlpatterns: list = [
    path("schema/", docs.SchemaView.as_view(), name="schema"),
    path("docs/", docs.swagger_ui, name="docs"),
    path("redoc/", docs.redoc, name="redoc"),
    path("whoami/", whoami.WhoAmIView.as_view(), name="whoami"),
    path("billing-runs/", billing_runs.BillingRunListView.as_view(), name="billing_run_list"),
    path("billing-runs/<int:pk>/", billing_runs.BillingRunDetailView.as_view(), name="billing_run_detail"),
    path("invoices/", reads.InvoiceListView.as_view(), name="invoice_list"),
    path("invoices/<int:pk>/", reads.InvoiceDetailView.as_view(), name="invoice_detail"),
    path("invoices/<int:pk>/pdf", reads.InvoicePdfView.as_view(), name="invoice_pdf"),
    path("invoices/<int:pk>/ubl", reads.InvoiceUblView.as_view(), name="invoice_ubl"),
    path("invoices/<int:pk>/disputes/", disputes.InvoiceDisputesView.as_view(), name="invoice_disputes"),
    path("credit-notes/", reads.CreditNoteListView.as_view(), name="credit_note_list"),
    path("credit-notes/<int:pk>/", reads.CreditNoteDetailView.as_view(), name="credit_note_detail"),
    # GET: the list (billing_reads.PaymentListView); POST records a payment (payments.py, its subclass).
    path("payments/", payments.PaymentListCreateView.as_view(), name="payment_list"),
    path("payments/<int:pk>/", reads.PaymentDetailView.as_view(), name="payment_detail"),
    path("disputes/", reads.DisputeListView.as_view(), name="dispute_list"),
    path("disputes/<int:pk>/", reads.DisputeDetailView.as_view(), name="dispute_detail"),
    path("exceptions/", reads.ExceptionListView.as_view(), name="exception_list"),
]
