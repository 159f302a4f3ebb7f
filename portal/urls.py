from django.contrib import admin
from django.urls import include, path

from approvals import urls as approvals_urls
from billing import urls_work as billing_work_urls
from portal import views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    # Two-factor (TOTP) enrolment and verification: required of controllers, billing admins, superusers.
    path("accounts/mfa/", views.mfa, name="mfa"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("billing/", include("billing.urls")),
    # The approval screens and billing's work screens that feed them (timesheet, expenses, PM queues)
    # share /approvals/ and the `approvals:` names; each app keeps its own views and URL module.
    path("approvals/", include((approvals_urls.urlpatterns + billing_work_urls.urlpatterns, "approvals"))),
    path("disputes/", include("disputes.urls")),
    path("integrations/", include("integrations.urls")),
    path("insights/", include("insights.urls")),
    # The customer portal: client contacts' own login and session (customers/auth.py), and staff's side of it.
    path("customer/", include("customers.urls")),
    path("customers/", include("customers.urls_staff")),
    # The versioned REST API for integration clients (token auth, scopes): docs/rules/integrations.md.
    path("api/v1/", include("integrations.api.urls")),
]
