"""/customer/: the customer portal (client contacts' own login and session, docs/rules/customers.md)."""

from django.urls import path

from customers import views

app_name = "customers"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/code/", views.login_verify, name="login_verify"),
    path("logout/", views.logout_view, name="logout"),
    path("password/", views.password_reset, name="password_reset"),
    path("password/<str:token>/", views.set_password, name="set_password"),
    path("security/", views.mfa_view, name="mfa"),
    path("", views.home, name="home"),
    path("invoices/<int:pk>/", views.invoice, name="invoice"),
    path("invoices/<int:pk>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("invoices/<int:pk>/ubl/", views.invoice_ubl, name="invoice_ubl"),
    path("invoices/<int:pk>/dispute/", views.dispute_new, name="dispute_new"),
    path("statement/", views.statement, name="statement"),
    path("disputes/", views.disputes, name="disputes"),
    path("disputes/<int:pk>/", views.dispute, name="dispute"),
    path("disputes/<int:pk>/note/", views.dispute_note, name="dispute_note"),
    path("attachments/<int:pk>/", views.dispute_attachment, name="dispute_attachment"),
    path("change-orders/", views.change_orders, name="change_orders"),
    path("change-orders/<int:pk>/", views.change_order, name="change_order"),
    path("change-orders/<int:pk>/pdf/", views.change_order_pdf, name="change_order_pdf"),
    path("change-orders/<int:pk>/sign/", views.change_order_sign_view, name="change_order_sign"),
    path("change-orders/<int:pk>/decline/", views.change_order_decline, name="change_order_decline"),
    path("milestones/", views.milestones, name="milestones"),
    path("milestones/<int:pk>/sign-off/", views.milestone_signoff_view, name="milestone_signoff"),
    path("esign/webhook/", views.esign_webhook, name="esign_webhook"),
]
