"""/api/v1/: the versioned REST API (DESIGN §5). Breaking changes go to /api/v2/."""

from django.urls import path  # noqa: F401

app_name = "api"

urlpatterns: list = []
