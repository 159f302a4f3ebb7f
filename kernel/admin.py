"""Admin site setup and the building blocks every Billable ModelAdmin shares.

- `AuditorReadOnlyMixin`: members of the `auditor` group see everything and change
  nothing (view yes; add, change, delete and state actions no), whatever else they hold.
- `BillableModelAdmin` / `BillableHistoryAdmin`: FSM status fields are always read-only,
  saves carry the acting user and a change reason, and history can be read but never
  "reverted" (a revert would bypass the services, their checks and their audit).
- `TransitionLogInline`: the django-fsm-log transitions of a record, read-only.
- `service_action` / `service_action_with_reason`: admin actions that call a use case
  in `<app>.services.*` per object, and turn its `ApplicationError` into a message.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.template.response import TemplateResponse
from django_fsm import FSMFieldMixin, TransitionNotAllowed
from django_fsm_log.admin import StateLogInline
from django_fsm_log.models import StateLog
from simple_history.admin import SimpleHistoryAdmin

from kernel.errors import ApplicationError
from kernel.roles import is_auditor

admin.site.site_header = "Billable administration"
admin.site.site_title = "Billable admin"
admin.site.index_title = "Records"
admin.site.site_url = "/"

ADMIN_CHANGE_REASON = "Edited in Django admin"


def fsm_field_names(model) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if isinstance(f, FSMFieldMixin)]


class AuditorReadOnlyMixin:
    """Auditors may view every record of the admin this is mixed into, and change none.

    Works for ModelAdmins and inlines alike (inline permission methods take `obj`).
    """

    def has_module_permission(self, request) -> bool:
        return is_auditor(request.user) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return is_auditor(request.user) or super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args, **kwargs) -> bool:
        return not is_auditor(request.user) and super().has_add_permission(request, *args, **kwargs)

    def has_change_permission(self, request, obj=None) -> bool:
        return not is_auditor(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return not is_auditor(request.user) and super().has_delete_permission(request, obj)


class StatusReadOnlyMixin:
    """FSM fields (protected) change only through transitions, i.e. services."""

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + [name for name in fsm_field_names(self.model) if name not in readonly]


class AuditedSaveMixin:
    """Admin saves name the user (simple-history) and say where the change came from."""

    def save_model(self, request, obj, form, change):
        obj._history_user = request.user
        obj._change_reason = ADMIN_CHANGE_REASON
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            obj._history_user = request.user
            obj._change_reason = ADMIN_CHANGE_REASON
            obj.delete()
        for obj in instances:
            obj._history_user = request.user
            obj._change_reason = ADMIN_CHANGE_REASON
            obj.save()
        formset.save_m2m()


class BillableModelAdmin(AuditorReadOnlyMixin, StatusReadOnlyMixin, AuditedSaveMixin, admin.ModelAdmin):
    list_per_page = 50


class BillableHistoryAdmin(AuditorReadOnlyMixin, StatusReadOnlyMixin, AuditedSaveMixin, SimpleHistoryAdmin):
    """For models with `HistoricalRecords`: the history is viewable, never revertible."""

    list_per_page = 50

    def revert_disabled(self, request, obj=None) -> bool:
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST":
            raise PermissionDenied("History is read-only; correct records through the portal's actions.")
        return super().history_form_view(request, object_id, version_id, extra_context)


class ReadOnlyInlineMixin:
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class TransitionLogInline(ReadOnlyInlineMixin, StateLogInline):
    """Who moved the record from which state to which, when and why."""

    verbose_name = "state transition"
    verbose_name_plural = "state transitions (log)"
    classes = ["collapse"]

    def has_view_permission(self, request, obj=None) -> bool:
        return True  # visible to whoever may see the parent record

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("by").order_by(F("timestamp").desc())


@admin.register(StateLog)
class StateLogAdmin(AuditorReadOnlyMixin, admin.ModelAdmin):
    """Every FSM transition of every record; append-only."""

    list_display = ("timestamp", "content_type", "object_id", "transition", "source_state", "state", "by")
    list_filter = ("content_type", "transition", "state")
    search_fields = ("object_id", "description", "by__username")
    date_hierarchy = "timestamp"
    list_select_related = ("content_type", "by")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- state changes as admin actions, through the services -------------------------------------


def _load_service(module_path: str, func_name: str) -> Callable | None:
    try:
        module = importlib.import_module(module_path)
    except ImportError:
        return None
    return getattr(module, func_name, None)


def run_service_on_each(
    request, queryset, *, module_path: str, func_name: str, kwarg: str, done: str, extra: Callable | None = None
) -> int:
    """Call `module_path.func_name(<kwarg>=obj, user=request.user, **extra(obj))` for each object.

    Each call is its own transaction (the service's), so one refusal does not undo the
    others; each refusal is reported with the object it concerns.
    """
    service = _load_service(module_path, func_name)
    if service is None:
        messages.error(request, f"This action is not available yet: {module_path}.{func_name} is missing.")
        return 0
    done_count = 0
    for obj in list(queryset.order_by("pk")):
        try:
            service(**{kwarg: obj, "user": request.user, **(extra(obj) if extra else {})})
        except ApplicationError as exc:
            messages.error(request, f"{obj}: {exc.message}")
        except TransitionNotAllowed as exc:
            messages.error(request, f"{obj}: not allowed in its current state ({exc}).")
        else:
            done_count += 1
    if done_count:
        opts = queryset.model._meta
        noun = opts.verbose_name if done_count == 1 else opts.verbose_name_plural
        messages.success(request, f"{done_count} {noun} {done}.")
    return done_count


def service_action(
    *, module_path: str, func_name: str, kwarg: str, description: str, done: str, extra: Callable | None = None
):
    """An admin action that applies one service to each selected object."""

    def action(modeladmin, request, queryset):
        run_service_on_each(
            request, queryset, module_path=module_path, func_name=func_name, kwarg=kwarg, done=done, extra=extra
        )

    action.__name__ = func_name
    action.short_description = description
    action.allowed_permissions = ("change",)
    return action


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=2000,
        help_text="Required. The person concerned sees it, and it is kept in the record's history.",
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason


def service_action_with_reason(*, module_path: str, func_name: str, kwarg: str, description: str, done: str):
    """Like `service_action`, with an intermediate page asking for the (required) reason."""

    def action(modeladmin, request, queryset):
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            reason = form.cleaned_data["reason"]
            run_service_on_each(
                request,
                queryset,
                module_path=module_path,
                func_name=func_name,
                kwarg=kwarg,
                done=done,
                extra=lambda obj: {"reason": reason},
            )
            return None
        opts = modeladmin.model._meta
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": description.split(" (", 1)[0],
            "button_label": description.split(" ", 1)[0],
            "objects": list(queryset[:200]),
            "count": queryset.count(),
            "form": form,
            "action_name": func_name,
            "action_description": description,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": opts,
            "app_label": opts.app_label,
            "media": modeladmin.media,
        }
        return TemplateResponse(request, "admin/transition_reason.html", context)

    action.__name__ = func_name
    action.short_description = description
    action.allowed_permissions = ("change",)
    return action
