"""Payments (namespace `disputes`): the list with unapplied cash, record, apply, close an exception."""

from django.urls import path

from disputes.views import payments as views

urlpatterns: list = [
    path("payments/", views.payment_list, name="payment_list"),
    path("payments/new/", views.payment_new, name="payment_new"),
    path("payments/<int:pk>/apply/", views.payment_apply_view, name="payment_apply"),
    path("payments/exceptions/<int:pk>/resolve/", views.payment_exception_resolve_view,
         name="payment_exception_resolve"),
]
