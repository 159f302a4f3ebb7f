from django.contrib import admin
from django.urls import include, path

from portal import views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    # Two-factor (TOTP) enrolment and verification: required of controllers, billing admins, superusers.
    path("accounts/mfa/", views.mfa, name="mfa"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("billing/", include("billing.urls")),
    path("approvals/", include("approvals.urls")),
    path("disputes/", include("disputes.urls")),
    path("integrations/", include("integrations.urls")),
    path("insights/", include("insights.urls")),
    # The versioned REST API for integration clients (token auth, scopes): docs/rules/integrations.md.
    path("api/v1/", include("integrations.api.urls")),
]
