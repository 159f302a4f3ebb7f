"""Billing screens for finance, mounted at /billing/."""
from django.urls import path

from billing import views, views_pm

app_name = "billing"

urlpatterns = [
    path("runs/", views.run_list, name="run_list"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/progress/", views.run_progress, name="run_progress"),
    path("runs/<int:pk>/resume/", views.run_resume, name="run_resume"),
    path("exceptions/", views.exception_queue, name="exception_queue"),
    path("invoices/", views.invoice_list, name="invoice_list"),
    path("invoices/<int:pk>/", views.invoice_detail, name="invoice_detail"),
    path("invoices/<int:pk>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("invoices/<int:pk>/ubl.xml", views.invoice_ubl, name="invoice_ubl"),
    path("invoices/<int:pk>/proforma.pdf", views.invoice_proforma, name="invoice_proforma"),
    path("invoices/<int:pk>/revalidate/", views.invoice_action, {"action": "revalidate"}, name="invoice_revalidate"),
    path("invoices/<int:pk>/override/", views.invoice_action, {"action": "override"}, name="invoice_override"),
    path("invoices/<int:pk>/write-down/", views.invoice_action, {"action": "write-down"}, name="invoice_write_down"),
    path("invoices/<int:pk>/approve/", views.invoice_action, {"action": "approve"}, name="invoice_approve"),
    path("invoices/<int:pk>/reject/", views.invoice_action, {"action": "reject"}, name="invoice_reject"),
    path("invoices/<int:pk>/cancel/", views.invoice_action, {"action": "cancel"}, name="invoice_cancel"),
    path("invoices/<int:pk>/resend/", views.invoice_action, {"action": "resend"}, name="invoice_resend"),
    path("purchase-orders/<int:pk>/", views.purchase_order_detail, name="purchase_order"),
    # project managers: the invoices of their projects, read only
    path("my-projects/invoices/", views_pm.pm_invoice_list, name="pm_invoice_list"),
    path("my-projects/invoices/<int:pk>/", views_pm.pm_invoice_detail, name="pm_invoice_detail"),
]
