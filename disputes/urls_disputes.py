"""Disputes and credit notes (namespace `disputes`)."""

from django.urls import path

from disputes.views import disputes as views

urlpatterns: list = [
    path("", views.dispute_list, name="dispute_list"),
    path("<int:pk>/", views.dispute_detail, name="dispute_detail"),
    path("invoices/<int:invoice_id>/open/", views.dispute_open_view, name="dispute_open"),
    path("invoices/<int:invoice_id>/suggest-category/", views.category_suggest_view, name="category_suggest"),
    path("classifier/", views.classifier_view, name="classifier"),
    path("<int:pk>/investigate/", views.dispute_investigate_view, name="dispute_investigate"),
    path("<int:pk>/notes/", views.dispute_note_view, name="dispute_note"),
    path("<int:pk>/withdraw/", views.dispute_withdraw_view, name="dispute_withdraw"),
    path("<int:pk>/reassign/", views.dispute_reassign_view, name="dispute_reassign"),
    path("<int:pk>/resolve/", views.dispute_resolve_view, name="dispute_resolve"),
    path("notes/<int:pk>/attachment/", views.dispute_attachment, name="dispute_attachment"),
    path("invoices/<int:invoice_id>/credit-note/", views.credit_note_new, name="credit_note_new"),
    path("credit-notes/<int:pk>/withdraw/", views.credit_note_withdraw, name="credit_note_withdraw"),
    path("invoices/<int:invoice_id>/reissue/", views.invoice_reissue_view, name="invoice_reissue"),
]
