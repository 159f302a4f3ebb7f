"""Admin for the approvals app: every model it defines, read-only for auditors.

Approval policies are maintained here by billing admins. Until the app grows its own
tailored admins, each model is registered with a generic admin: status (FSM) fields
read-only, history viewable when the model keeps it.
"""
from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.db import models

from portal.admin import BillableHistoryAdmin, BillableModelAdmin


def _generic_admin(model: type[models.Model]) -> type[admin.ModelAdmin]:
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    shown = [f.name for f in fields if not isinstance(f, models.TextField | models.JSONField)][:7]
    filters = [
        f.name
        for f in fields
        if f.choices or isinstance(f, models.BooleanField)
    ][:4]
    searchable = [f.name for f in fields if isinstance(f, models.CharField) and not f.choices][:4]
    fks = tuple(f.name for f in fields if isinstance(f, models.ForeignKey))
    base = BillableHistoryAdmin if hasattr(model, "history") else BillableModelAdmin
    attrs = {
        "list_display": ["__str__", *shown] if shown else ["__str__"],
        "list_filter": filters,
        "search_fields": searchable,
        "list_select_related": tuple(f for f in fks if f in shown),
        "raw_id_fields": fks,
    }
    return type(f"{model.__name__}Admin", (base,), attrs)


for _model in apps.get_app_config("approvals").get_models():
    if not _model._meta.auto_created and not _model.__name__.startswith("Historical") and not admin.site.is_registered(
        _model
    ):
        admin.site.register(_model, _generic_admin(_model))
