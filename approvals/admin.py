"""Admin for the approvals app.

- Billing admins maintain approval policies here, with their steps inline.
- Approval requests are read-only records; approving, rejecting (with a reason)
  and cancelling are admin actions that call `approvals.services`, so
  segregation of duties, delegation and the audit trail apply in admin too.
- Decisions, route overrides and reminders are written by services only and are
  read-only: nobody fakes a decision or an override confirmation in admin.
- Delegations are created through `delegation_create` (eligible delegates only)
  and cannot be edited here; "End" is an action calling `delegation_end`.
- Auditors see everything and change nothing (kernel.admin building blocks).
"""

from __future__ import annotations

from django import forms
from django.apps import apps
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models

from approvals.models import (
    ApprovalDecision,
    ApprovalOverride,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalStep,
    Delegation,
    Reminder,
)
from approvals.registry import subject_label
from approvals.services.subjects import subject_prefetch
from kernel.admin import (
    AuditorReadOnlyMixin,
    BillableHistoryAdmin,
    BillableModelAdmin,
    ReadOnlyInlineMixin,
    TransitionLogInline,
    service_action,
    service_action_with_reason,
)
from kernel.errors import ApplicationError


class ApprovalStepInline(AuditorReadOnlyMixin, admin.TabularInline):
    model = ApprovalStep
    extra = 0
    fields = ("order", "approver_kind", "role", "user", "sla_hours", "escalation_role")
    raw_id_fields = ("user",)
    ordering = ("order",)


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(BillableHistoryAdmin):
    list_display = (
        "name",
        "subject_type",
        "amount_band",
        "conditions",
        "priority",
        "active",
        "allow_override",
        "steps_summary",
    )
    list_filter = ("subject_type", "active", "allow_override")
    search_fields = ("name", "description")
    list_select_related = ("entity", "client")
    raw_id_fields = ("entity", "client")
    inlines = [ApprovalStepInline]
    fieldsets = (
        (None, {"fields": ("name", "description", "subject_type", "priority", "active", "allow_override")}),
        (
            "Conditions (empty matches anything)",
            {
                "fields": (
                    ("min_amount", "max_amount"),
                    "entity",
                    "client",
                    "billing_model",
                    "requires_warning",
                    "min_cap_growth_pct",
                )
            },
        ),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("steps")

    @admin.display(description="Amount (entity currency)")
    def amount_band(self, obj: ApprovalPolicy) -> str:
        if obj.min_amount is None and obj.max_amount is None:
            return "any"
        low = f"{obj.min_amount:,.2f}" if obj.min_amount is not None else "0"
        high = f"{obj.max_amount:,.2f}" if obj.max_amount is not None else "∞"
        return f"{low} – < {high}"

    @admin.display(description="Other conditions")
    def conditions(self, obj: ApprovalPolicy) -> str:
        parts = []
        if obj.entity_id:
            parts.append(f"entity {obj.entity.code}")
        if obj.client_id:
            parts.append(f"client {obj.client.code}")
        if obj.billing_model:
            parts.append(obj.get_billing_model_display())
        if obj.requires_warning:
            parts.append(f"warning {obj.requires_warning}")
        if obj.min_cap_growth_pct is not None:
            parts.append(f"cap grows > {obj.min_cap_growth_pct.normalize()} %")
        return ", ".join(parts) or "—"

    @admin.display(description="Steps")
    def steps_summary(self, obj: ApprovalPolicy) -> str:
        steps = sorted(obj.steps.all(), key=lambda s: s.order)
        return " → ".join(f"{s.approver_label} ({s.sla_hours} h)" for s in steps) or "—"


class ApprovalDecisionInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = ApprovalDecision
    fields = (
        "step_order",
        "decision",
        "approver",
        "on_behalf_of",
        "override",
        "comment",
        "step_opened_at",
        "decided_at",
    )
    readonly_fields = fields
    ordering = ("step_order",)

    def has_view_permission(self, request, obj=None) -> bool:
        return True  # whoever may see the request sees its decisions

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("approver", "on_behalf_of")


approval_approve = service_action(
    module_path="approvals.services",
    func_name="approval_approve",
    kwarg="request",
    description="Approve the open step",
    done="approved at their open step",
)
approval_reject = service_action_with_reason(
    module_path="approvals.services",
    func_name="approval_reject",
    kwarg="request",
    description="Reject (send the subject back)",
    done="rejected",
)
approval_request_cancel = service_action_with_reason(
    module_path="approvals.services",
    func_name="approval_request_cancel",
    kwarg="request",
    description="Cancel the request",
    done="cancelled",
)


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(BillableHistoryAdmin):
    """Read-only: requests change through the actions (services) only."""

    list_display = (
        "id",
        "subject_display",
        "subject_type",
        "status",
        "current_step",
        "sla_due_at",
        "escalated",
        "policy",
        "amount_display",
    )
    list_filter = ("status", "subject_type", "escalated", "policy")
    search_fields = ("=id", "=object_id", "policy__name")
    date_hierarchy = "created_at"
    list_select_related = ("policy",)
    inlines = [ApprovalDecisionInline, TransitionLogInline]
    actions = [approval_approve, approval_reject, approval_request_cancel]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related(subject_prefetch())

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields] + ["subject_display"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Subject")
    def subject_display(self, obj: ApprovalRequest) -> str:
        subject = obj.subject
        return subject_label(subject) if subject is not None else f"{obj.subject_type} {obj.object_id} (gone)"

    @admin.display(description="Amount")
    def amount_display(self, obj: ApprovalRequest) -> str:
        if obj.amount is None:
            return "—"
        return f"{obj.amount:,.2f} {obj.currency}"


@admin.register(ApprovalDecision)
class ApprovalDecisionAdmin(BillableHistoryAdmin):
    """Written by `approval_decide` only."""

    list_display = ("request", "step_order", "decision", "approver", "on_behalf_of", "override", "decided_at")
    list_filter = ("decision", ("override", admin.EmptyFieldListFilter))
    search_fields = ("=request__id", "approver__username", "on_behalf_of__username", "comment")
    date_hierarchy = "decided_at"
    list_select_related = ("request", "approver", "on_behalf_of")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApprovalOverride)
class ApprovalOverrideAdmin(BillableHistoryAdmin):
    """Written by `approvals.services.overrides` only (request, confirm by a second controller, withdraw)."""

    list_display = ("request", "status", "requested_by", "from_step", "confirmed_by", "confirmed_at", "created_at")
    list_filter = ("status",)
    search_fields = ("=request__id", "requested_by__username", "confirmed_by__username", "reason")
    date_hierarchy = "created_at"
    list_select_related = ("request", "requested_by", "confirmed_by")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class DelegationAddForm(forms.ModelForm):
    """Checked by the service's own rules (eligible delegate, dates, who may set it up) before saving."""

    class Meta:
        model = Delegation
        fields = ("delegator", "delegate", "starts_on", "ends_on", "reason")

    def clean(self):
        from approvals.services.delegations import delegation_check

        data = super().clean()
        if self.errors:
            return data
        try:
            delegation_check(
                delegator=data["delegator"],
                delegate=data["delegate"],
                starts_on=data["starts_on"],
                ends_on=data["ends_on"],
                user=self.current_user,
            )
        except ApplicationError as exc:
            if exc.field_errors:
                raise ValidationError({k: v for k, v in exc.field_errors.items() if k in self.fields}) from exc
            raise ValidationError(exc.message) from exc
        return data


def end_delegations(modeladmin, request, queryset):
    from approvals.services.delegations import delegation_end

    ended = 0
    for delegation in queryset:
        try:
            delegation_end(delegation=delegation, user=request.user)
            ended += 1
        except ApplicationError as exc:
            modeladmin.message_user(request, f"{delegation}: {exc.message}", level="error")
    if ended:
        modeladmin.message_user(request, f"{ended} delegation(s) ended (as of yesterday).")


end_delegations.short_description = "End the delegation (back in office)"


@admin.register(Delegation)
class DelegationAdmin(BillableHistoryAdmin):
    """Add goes through `delegation_create`; a delegation is never edited, only ended (action)."""

    list_display = ("delegator", "delegate", "starts_on", "ends_on", "reason", "created_by")
    list_filter = ("starts_on", "ends_on")
    search_fields = ("delegator__username", "delegate__username", "reason")
    list_select_related = ("delegator", "delegate", "created_by")
    raw_id_fields = ("delegator", "delegate")
    readonly_fields = ("created_by",)
    actions = [end_delegations]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = DelegationAddForm
        form = super().get_form(request, obj, change=change, **kwargs)
        form.current_user = request.user
        return form

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [f.name for f in self.model._meta.concrete_fields]
        return self.readonly_fields

    def has_change_permission(self, request, obj=None) -> bool:
        # Viewing is allowed (the change form is read-only); editing a live delegation is not.
        return super().has_change_permission(request, obj) and obj is None

    def save_model(self, request, obj, form, change):
        from approvals.services.delegations import delegation_create

        if change:
            raise PermissionError("Delegations are not edited; end one and create another.")
        created = delegation_create(
            delegator=obj.delegator,
            delegate=obj.delegate,
            starts_on=obj.starts_on,
            ends_on=obj.ends_on,
            reason=obj.reason,
            user=request.user,
        )
        obj.pk = created.pk
        obj.created_by = created.created_by


@admin.register(Reminder)
class ReminderAdmin(AuditorReadOnlyMixin, admin.ModelAdmin):
    """Every reminder and escalation e-mail sent; append-only."""

    list_display = ("sent_on", "kind", "recipient", "subject_key", "sent_at")
    list_filter = ("kind", "sent_on")
    search_fields = ("recipient__username", "subject_key")
    date_hierarchy = "sent_on"
    list_select_related = ("recipient",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# Any model added later gets a generic admin until it has a tailored one (steps live inline only).
for _model in apps.get_app_config("approvals").get_models():
    if (
        _model is not ApprovalStep
        and not _model._meta.auto_created
        and not _model.__name__.startswith("Historical")
        and not admin.site.is_registered(_model)
    ):
        admin.site.register(
            _model,
            type(
                f"{_model.__name__}Admin",
                (BillableHistoryAdmin if hasattr(_model, "history") else BillableModelAdmin,),
                {
                    "list_display": ["__str__"],
                    "raw_id_fields": [f.name for f in _model._meta.concrete_fields if isinstance(f, models.ForeignKey)],
                },
            ),
        )
