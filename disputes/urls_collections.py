"""Collections: AR aging, dunning, the hand-off queue, client statements and collections profiles."""

from django.urls import path

from disputes.views import collections as views

urlpatterns: list = [
    path("collections/aging/", views.aging, name="aging"),
    path("collections/dunning/", views.dunning, name="dunning"),
    path("collections/dunning/send/", views.dunning_send, name="dunning_send"),
    path("collections/handoffs/", views.handoff_list, name="handoff_list"),
    path("collections/handoffs/new/<int:pk>/", views.handoff_new, name="handoff_new"),
    path("collections/handoffs/<int:pk>/close/", views.handoff_close, name="handoff_close"),
    path("collections/clients/<int:client_id>/statement/", views.client_statement, name="client_statement"),
    path("collections/clients/<int:client_id>/profile/", views.collections_profile, name="collections_profile"),
]
