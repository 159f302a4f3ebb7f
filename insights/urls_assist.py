"""Assistive intelligence screens (namespace `insights`): model quality, SOW suggestions."""

from django.urls import path

from insights import views_assist as views

urlpatterns: list = [
    path("risk-model/", views.model_quality, name="model"),
    path("sow/", views.sow_index, name="sow_index"),
    path("contracts/<int:pk>/sow/upload/", views.sow_upload_view, name="sow_upload"),
    path("contracts/<int:pk>/sow/", views.sow_review, name="sow_review"),
    path("sow-readings/<int:pk>/", views.sow_reading, name="sow_reading"),
    path("sow-suggestions/<int:pk>/decide/", views.sow_decide, name="sow_decide"),
]
