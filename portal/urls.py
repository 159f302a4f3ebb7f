from django.contrib import admin
from django.urls import include, path

from approvals import urls as approvals_urls
from billing import urls_work as billing_work_urls
from insights import api_urls as kpi_api_urls
from integrations.api import urls as api_urls
from portal import views
from revenue import api_urls as revenue_api_urls

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
    path("revenue/", include("revenue.urls")),
    # The customer portal: client contacts' own login and session (customers/auth.py), and staff's side of it.
    path("customer/", include("customers.urls")),
    path("customers/", include("customers.urls_staff")),
    # The versioned REST API for integration clients (token auth, scopes): docs/rules/integrations.md.
    # One `api` namespace: integrations' routes, then those of the feature apps above it (layers).
    path(
        "api/v1/",
        include((api_urls.urlpatterns + revenue_api_urls.urlpatterns + kpi_api_urls.urlpatterns, "api")),
    ),
]
