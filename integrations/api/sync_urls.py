"""Inbound-sync API routes (namespace `api`): per resource a list/upsert, a by-external-id and a bulk route."""

from django.urls import path

from integrations.api.sync import RESOURCES, VIEWS

urlpatterns: list = []
for _name, (_list, _detail, _bulk) in VIEWS.items():
    _path = RESOURCES[_name].path
    urlpatterns += [
        path(f"{_path}/", _list.as_view(), name=f"sync_{_name}_list"),
        path(f"{_path}/bulk/", _bulk.as_view(), name=f"sync_{_name}_bulk"),
        path(f"{_path}/<str:external_id>/", _detail.as_view(), name=f"sync_{_name}_detail"),
    ]
