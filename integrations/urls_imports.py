"""/integrations/imports/: CSV time import (upload, dry run, import) and the history of every inbound import."""

from django.urls import path

from integrations import views_imports

urlpatterns: list = [
    path("imports/", views_imports.import_list, name="import_list"),
    path("imports/upload/", views_imports.import_upload, name="import_upload"),
    path("imports/<int:pk>/", views_imports.import_detail, name="import_detail"),
    path("imports/<int:pk>/import/", views_imports.import_confirm, name="import_confirm"),
]
