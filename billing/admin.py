"""Django admin for the billing domain: master data, contracts, work, invoices.

Rules kept here (see kernel/admin.py for the shared building blocks):
- Status fields are read-only; state changes are admin actions that call the
  services, so segregation of duties and the audit trail apply in admin too.
- Records that others already rely on are locked: submitted/approved work,
  decided change orders, numbered invoices (corrections are credit notes),
  effective-dated rates once saved (end them and add a new period instead).
- The gapless number counter, billing runs, payments and validation findings are
  written by services only and are read-only here.
- Auditors see everything and change nothing.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing.models import (
    BillingRun,
    BillingRunChunk,
    ChangeOrder,
    ChangeOrderMilestone,
    ChangeOrderRate,
    Client,
    Contract,
    ContractRate,
    DeliveryAttempt,
    Expense,
    FxRate,
    Invoice,
    InvoiceDocument,
    InvoiceException,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceTax,
    LegalEntity,
    Milestone,
    Payment,
    Person,
    Project,
    PurchaseOrder,
    RateCard,
    RateCardLine,
    Role,
    TaxEngineRecording,
    TaxRule,
    TimeEntry,
    VatCheck,
)
from billing.models.contracts import CONTRACT_TERMS, ContractTermsLockedError
from billing.selectors import OPEN_RECEIVABLE_STATUSES
from kernel.admin import (
    AuditorReadOnlyMixin,
    BillableHistoryAdmin,
    BillableModelAdmin,
    ReadOnlyInlineMixin,
    TransitionLogInline,
    service_action,
    service_action_with_reason,
)
from kernel.money import money

# --- list filters used by the portal's links -------------------------------------------------


class MineFilter(admin.SimpleListFilter):
    """?mine=1: the current user's own time entries or expenses."""

    title = "person"
    parameter_name = "mine"

    def lookups(self, request, model_admin):
        return [("1", "Mine")]

    def queryset(self, request, queryset):
        if self.value() == "1":
            return queryset.filter(person__user=request.user)
        return queryset


class ManagedByMeFilter(admin.SimpleListFilter):
    """?managed_by_me=1: records of projects the current user manages."""

    title = "project manager"
    parameter_name = "managed_by_me"

    def lookups(self, request, model_admin):
        return [("1", "Projects I manage")]

    def queryset(self, request, queryset):
        if self.value() != "1":
            return queryset
        if queryset.model is ChangeOrder:
            managed = Project.objects.filter(contract=OuterRef("contract"), project_manager=request.user)
            return queryset.filter(Exists(managed))
        if queryset.model is Project:
            return queryset.filter(project_manager=request.user)
        return queryset.filter(project__project_manager=request.user)


class ExceptionCodeFilter(admin.SimpleListFilter):
    """?exception_code=CODE: invoices with an open exception of that code."""

    title = "open exception"
    parameter_name = "exception_code"

    def lookups(self, request, model_admin):
        codes = (
            InvoiceException.objects.filter(state=InvoiceException.State.OPEN)
            .values_list("code", flat=True)
            .distinct()
            .order_by("code")
        )
        return [(code, code) for code in codes]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        open_of_code = InvoiceException.objects.filter(
            invoice=OuterRef("pk"), code=self.value(), state=InvoiceException.State.OPEN
        )
        return queryset.filter(Exists(open_of_code))


class OverdueFilter(admin.SimpleListFilter):
    """?overdue=yes: open receivables past their due date."""

    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue receivables"), ("no", "Not overdue")]

    def queryset(self, request, queryset):
        overdue = {
            "kind": Invoice.Kind.INVOICE,
            "status__in": OPEN_RECEIVABLE_STATUSES,
            "due_date__lt": timezone.localdate(),
        }
        if self.value() == "yes":
            return queryset.filter(**overdue)
        if self.value() == "no":
            return queryset.exclude(**overdue)
        return queryset


# --- forms and inlines ------------------------------------------------------------------------


class EffectiveDatedRateForm(forms.ModelForm):
    """A saved rate period keeps its rate and start; only its end may be set.

    Rates get history, never edits: to change a rate, end the period and add a new one.
    """

    locked_when_saved = ("role", "person", "rate", "effective_from")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "change_order" in self.fields:
            self.fields["change_order"].disabled = True
        if self.instance.pk:
            for name in self.locked_when_saved:
                if name in self.fields:
                    self.fields[name].disabled = True


class LockedUnlessForm(forms.ModelForm):
    """Every field disabled once the instance leaves the states in `editable_statuses`."""

    editable_statuses: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.status not in self.editable_statuses:
            for field in self.fields.values():
                field.disabled = True


class DraftChangeOrderForm(LockedUnlessForm):
    editable_statuses = (ChangeOrder.Status.DRAFT,)


class BillableInline(AuditorReadOnlyMixin, admin.TabularInline):
    extra = 0
    show_change_link = True


class RateCardLineInline(BillableInline):
    model = RateCardLine
    form = EffectiveDatedRateForm
    can_delete = False  # a saved period is ended (effective to), not deleted
    fields = ("role", "rate", "effective_from", "effective_to")
    autocomplete_fields = ("role",)
    extra = 1


def contract_terms_locked(contract: Contract | None) -> bool:
    """A live contract's terms and rates change only through an approved change order (docs/rules/approvals.md)."""
    return contract is not None and contract.pk is not None and contract.terms_locked


class ContractRateInline(BillableInline):
    """Rates of a draft contract are set here; a live contract's come from approved change orders (read-only)."""

    model = ContractRate
    form = EffectiveDatedRateForm
    can_delete = False
    fields = ("role", "person", "rate", "effective_from", "effective_to", "change_order")
    autocomplete_fields = ("role", "person")
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return not contract_terms_locked(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return not contract_terms_locked(obj) and super().has_change_permission(request, obj)


CHANGE_ORDER_TERMS = (
    "new_cap", "new_payment_terms_days", "new_po_number", "new_purchase_order", "new_billing_frequency",
)


class ChangeOrderInline(BillableInline):
    """New change orders can be drafted here; rates and milestones are added on the change order's page."""

    model = ChangeOrder
    form = DraftChangeOrderForm
    fields = ("code", "description", "cap_delta", "signed_on", "status")
    readonly_fields = ("status",)
    can_delete = False
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 50})}}


class ProjectInline(BillableInline):
    model = Project
    can_delete = False
    fields = ("code", "name", "business_unit", "project_manager", "status")
    readonly_fields = ("status",)
    autocomplete_fields = ("project_manager",)


class _DraftChangeOrderChildInline(BillableInline):
    """Rates and milestones of a change order: editable while the change order is a draft."""

    show_change_link = False

    def _parent_is_draft(self, obj) -> bool:
        return obj is None or obj.status == ChangeOrder.Status.DRAFT

    def has_add_permission(self, request, obj=None) -> bool:
        return self._parent_is_draft(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._parent_is_draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._parent_is_draft(obj) and super().has_delete_permission(request, obj)


class ChangeOrderRateInline(_DraftChangeOrderChildInline):
    model = ChangeOrderRate
    fields = ("role", "person", "rate", "effective_from", "effective_to")
    autocomplete_fields = ("role", "person")


class ChangeOrderMilestoneInline(_DraftChangeOrderChildInline):
    model = ChangeOrderMilestone
    fields = ("project", "name", "amount", "due_date")
    autocomplete_fields = ("project",)


class _OpenInvoiceChildInline(BillableInline):
    """Lines and taxes of an invoice: editable only while it is an unnumbered draft."""

    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return not invoice_is_locked(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return not invoice_is_locked(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return not invoice_is_locked(obj) and super().has_delete_permission(request, obj)


class InvoiceLineInline(_OpenInvoiceChildInline):
    model = InvoiceLine
    fields = ("position", "kind", "project", "role", "description", "quantity", "unit_price", "amount",
              "rate_source", "rate_source_label")
    autocomplete_fields = ("project", "role")


class InvoiceTaxInline(_OpenInvoiceChildInline):
    model = InvoiceTax
    fields = ("category", "rate", "base", "amount", "legal_note")


class InvoiceExceptionInline(ReadOnlyInlineMixin, AuditorReadOnlyMixin, admin.TabularInline):
    """Findings of the validation; resolved or overridden through the services."""

    model = InvoiceException
    fields = ("code", "severity", "state", "message", "fix_hint", "amount", "owner", "resolved_by",
              "resolution_reason")
    readonly_fields = fields
    show_change_link = True

    def has_view_permission(self, request, obj=None) -> bool:
        return True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner", "resolved_by")


# --- shared bits ------------------------------------------------------------------------------


def invoice_is_locked(invoice: Invoice | None) -> bool:
    """Numbered invoices are immutable; only drafts and exceptions may be edited by hand."""
    if invoice is None:
        return False
    return bool(invoice.number) or invoice.status not in (Invoice.Status.DRAFT, Invoice.Status.EXCEPTION)


def _work_action(func: str, description: str, done: str):
    return service_action(module_path="billing.services.work", func_name=func, kwarg="item",
                          description=description, done=done)


work_submit = _work_action("work_submit", "Submit selected for approval", "submitted")
work_approve = _work_action("work_approve", "Approve selected", "approved")
work_reject = service_action_with_reason(
    module_path="billing.services.work", func_name="work_reject", kwarg="item",
    description="Reject selected (with a reason)", done="rejected",
)


# --- master data ------------------------------------------------------------------------------


@admin.register(LegalEntity)
class LegalEntityAdmin(BillableHistoryAdmin):
    list_display = ("code", "name", "country", "currency", "vat_id", "number_prefix")
    list_filter = ("country", "currency")
    search_fields = ("code", "name", "vat_id")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("code", "name", "country", "currency", "vat_id", "invoice_prefix")}),
        ("Address", {"fields": ("address_line1", "postal_code", "city")}),
        ("Bank and remittance", {"fields": ("bank_name", "iban", "bic", "bank_account_number", "bank_routing_number",
                                            "remittance_address")}),
        ("Legal details printed on invoices", {"fields": ("register_court", "register_number", "registered_office",
                                                          "managing_directors", "sales_tax_statement")}),
        ("E-invoicing", {"fields": ("peppol_id", "contact_name", "contact_phone", "contact_email")}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ["collapse"]}),
    )


class VatCheckInline(ReadOnlyInlineMixin, admin.TabularInline):
    """Every VIES consultation of the client's VAT id, newest first (billing.services.vat_checks)."""

    model = VatCheck
    fields = ("checked_at", "vat_id", "result", "request_date", "consultation_number", "name", "message",
              "checked_by")
    readonly_fields = fields
    verbose_name = "VIES check"
    verbose_name_plural = "VIES checks (history)"
    max_num = 0


@admin.register(Client)
class ClientAdmin(BillableHistoryAdmin):
    list_display = ("code", "legal_name", "country", "currency", "vat_id", "num_payment_terms_days",
                    "po_required", "credit_hold", "master_data")
    list_filter = ("country", "currency", "delivery_channel", "po_required", "credit_hold", "source")
    search_fields = ("code", "legal_name", "vat_id", "external_id", "erp_id", "billing_emails")
    readonly_fields = ("master_data_problems_display", "vies_display", "created_at", "updated_at")
    inlines = [VatCheckInline]
    actions = [service_action(module_path="billing.services.vat_checks", func_name="vat_check_run", kwarg="client",
                              description="Check VAT id in VIES now", done="checked in VIES")]
    fieldsets = (
        (None, {"fields": ("code", "legal_name", "country", "currency", "vat_id", "not_vat_registered",
                           "vies_display", "master_data_problems_display")}),
        ("Billing", {"fields": ("payment_terms_days", "po_required", "consolidate_invoices", "billing_emails",
                                "credit_hold")}),
        ("Address", {"fields": ("address_line1", "address_line2", "postal_code", "city", "region")}),
        ("Delivery and e-invoicing", {"fields": ("delivery_channel", "peppol_id", "einvoice_by_email", "leitweg_id",
                                                 "facturx")}),
        ("External ids", {"fields": ("source", "external_id", "erp_id")}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ["collapse"]}),
    )

    @admin.display(description="VIES check")
    def vies_display(self, obj: Client) -> str:
        last = VatCheck.objects.filter(client=obj).order_by("-checked_at", "-id").first()
        if last is None:
            return "Never checked"
        return last.answer

    @admin.display(description="Terms (days)", ordering="payment_terms_days")
    def num_payment_terms_days(self, obj: Client) -> int:
        return obj.payment_terms_days

    @admin.display(description="Master data")
    def master_data(self, obj: Client) -> str:
        problems = obj.master_data_problems()
        if not problems:
            return format_html('<span class="billable-status">{}</span>', "Complete")
        return format_html(
            '<span class="billable-status" title="{}">{} problem{}</span>',
            " ".join(problems), len(problems), "" if len(problems) == 1 else "s",
        )

    @admin.display(description="What blocks invoicing")
    def master_data_problems_display(self, obj: Client) -> str:
        if obj is None or not obj.pk:
            return "—"
        problems = obj.master_data_problems()
        if not problems:
            return "Nothing: master data is complete."
        return format_html('<ul class="billable-problems">{}</ul>', format_html_join("", "<li>{}</li>",
                                                                                  ((p,) for p in problems)))


class PurchaseOrderForm(forms.ModelForm):
    """A PO that invoices draw on keeps its number, client and currency; its amount never drops below what
    is invoiced, and changing it takes a reason (kept in its history) — ADR 0068."""

    change_reason = forms.CharField(
        required=False,
        max_length=100,
        help_text="Required when changing the amount or validity of a PO that invoices already draw on.",
    )

    class Meta:
        model = PurchaseOrder
        fields = ("number", "client", "currency", "amount", "valid_from", "valid_to", "raised_by", "notes",
                  "source", "external_id")

    def clean(self):
        from billing.services.purchase_orders import committed_drawdown

        cleaned = super().clean()
        po = self.instance
        if not po.pk:
            return cleaned
        drawn = committed_drawdown([po.pk])[po.pk]
        used = po.invoices.exists() or po.contracts.exists()
        amount = cleaned.get("amount")
        if amount is not None and amount < drawn:
            self.add_error("amount", f"{drawn} {po.currency} is already invoiced on this PO; the amount cannot "
                                     "go below it.")
        for name in ("number", "client", "currency"):
            if used and name in self.changed_data:
                self.add_error(name, "Contracts or invoices refer to this PO: issue a new PO instead.")
        if po.invoices.exists() and {"amount", "valid_from", "valid_to"} & set(self.changed_data) and not (
            cleaned.get("change_reason") or ""
        ).strip():
            self.add_error("change_reason", "Say why the amount or validity of a PO in use changes.")
        return cleaned


@admin.register(PurchaseOrder)
class PurchaseOrderAdmin(BillableHistoryAdmin):
    """Client POs; the PO page in the portal shows what is drawn. Locks: see `PurchaseOrderForm`."""

    form = PurchaseOrderForm
    list_display = ("number", "client", "currency", "num_amount", "valid_from", "valid_to", "remaining")
    list_filter = ("currency", "source")
    search_fields = ("number", "client__code", "client__legal_name", "external_id")
    list_select_related = ("client",)
    autocomplete_fields = ("client",)
    readonly_fields = ("figures", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("number", "client", "currency", "amount", "valid_from", "valid_to", "raised_by",
                           "notes", "change_reason", "figures")}),
        ("External ids", {"fields": ("source", "external_id"), "classes": ["collapse"]}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ["collapse"]}),
    )

    def save_model(self, request, obj, form, change):
        from billing.services.purchase_orders import purchase_order_save
        from kernel.errors import ApplicationError

        reason = (form.cleaned_data.get("change_reason") or "").strip() or "Changed in admin"
        try:
            purchase_order_save(po=obj, user=request.user, reason=reason)
        except ApplicationError as exc:  # a run drew on it meanwhile
            raise PermissionDenied(exc.message) from exc

    @admin.display(description="Amount", ordering="amount")
    def num_amount(self, obj: PurchaseOrder):
        return money(obj.amount, obj.currency)

    @admin.display(description="Remaining")
    def remaining(self, obj: PurchaseOrder):
        from billing.services.purchase_orders import po_figures

        return money(po_figures(obj).remaining, obj.currency)

    @admin.display(description="Drawdown")
    def figures(self, obj: PurchaseOrder):
        from billing.services.purchase_orders import po_figures

        if obj is None or not obj.pk:
            return "—"
        f = po_figures(obj)
        return format_html(
            "Invoiced {} · credited {} · in drafts {} · remaining {} — <a href=\"{}\">PO page</a>",
            money(f.invoiced, obj.currency), money(f.credited, obj.currency), money(f.in_drafts, obj.currency),
            money(f.remaining, obj.currency), reverse("billing:purchase_order", args=[obj.pk]),
        )


@admin.register(Role)
class RoleAdmin(BillableHistoryAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


@admin.register(Person)
class PersonAdmin(BillableHistoryAdmin):
    list_display = ("code", "name", "role", "email", "user", "home_entity", "active")
    list_filter = ("active", "role", "home_entity", "source")
    search_fields = ("code", "name", "email", "external_id", "user__username")
    list_select_related = ("role", "user", "home_entity")
    autocomplete_fields = ("role", "user", "home_entity")
    readonly_fields = ("created_at", "updated_at")


@admin.register(RateCard)
class RateCardAdmin(BillableHistoryAdmin):
    list_display = ("code", "name", "currency")
    list_filter = ("currency",)
    search_fields = ("code", "name")
    inlines = [RateCardLineInline]
    readonly_fields = ("created_at", "updated_at")


@admin.register(RateCardLine)
class RateCardLineAdmin(BillableHistoryAdmin):
    form = EffectiveDatedRateForm
    list_display = ("rate_card", "role", "num_rate", "effective_from", "effective_to")
    list_filter = ("rate_card", "role")
    search_fields = ("rate_card__code", "role__code")
    list_select_related = ("rate_card", "role")
    autocomplete_fields = ("rate_card", "role")
    date_hierarchy = "effective_from"

    @admin.display(description="Hourly rate", ordering="rate")
    def num_rate(self, obj: RateCardLine):
        return money(obj.rate, obj.rate_card.currency)


@admin.register(TaxRule)
class TaxRuleAdmin(BillableHistoryAdmin):
    list_display = ("entity_country", "client_relation", "client_country", "client_vat_registered", "category",
                    "num_rate", "active", "legal_note")
    list_filter = ("active", "entity_country", "client_relation", "category")
    search_fields = ("entity_country", "client_country", "legal_note")

    @admin.display(description="Rate %", ordering="rate")
    def num_rate(self, obj: TaxRule):
        return obj.rate


@admin.register(FxRate)
class FxRateAdmin(BillableHistoryAdmin):
    list_display = ("date", "from_currency", "to_currency", "num_rate")
    list_filter = ("from_currency", "to_currency")
    search_fields = ("from_currency", "to_currency")
    date_hierarchy = "date"

    @admin.display(description="Rate", ordering="rate")
    def num_rate(self, obj: FxRate):
        return obj.rate


# --- contracts, change orders, projects ---------------------------------------------------------


def _contract_action(name: str, description: str, done: str):
    return service_action(module_path="billing.services.contracts", func_name=f"contract_{name}",
                          kwarg="contract", description=description, done=done)


@admin.register(Contract)
class ContractAdmin(BillableHistoryAdmin):
    list_display = ("code", "name", "client", "entity", "billing_model", "currency", "money_cap", "status")
    list_filter = ("status", "billing_model", "entity", "currency", "billing_frequency", "invoice_per_project")
    search_fields = ("code", "name", "client__code", "client__legal_name", "po_number", "external_id")
    list_select_related = ("client", "entity")
    autocomplete_fields = ("client", "entity", "rate_card", "purchase_order")
    date_hierarchy = "created_at"
    inlines = [ContractRateInline, ChangeOrderInline, ProjectInline, TransitionLogInline]
    actions = [
        _contract_action("activate", "Activate selected contracts", "activated"),
        _contract_action("suspend", "Suspend selected contracts", "suspended"),
        _contract_action("resume", "Resume selected contracts", "resumed"),
        _contract_action("close", "Close selected contracts", "closed"),
    ]
    fieldsets = (
        (None, {"fields": ("code", "name", "client", "entity", "status")}),
        ("Commercial terms", {"fields": ("billing_model", "currency", "rate_card", "cap", "expense_markup_pct",
                                         "discount_pct", "retainer_amount", "included_hours")}),
        ("Invoicing", {"fields": ("purchase_order", "po_number", "payment_terms_days", "billing_frequency",
                                  "invoice_per_project")}),
        ("Statement of work", {"fields": ("sow_document", "sow_signed_on")}),
        ("Customer side", {"fields": ("requires_signed_change_orders", "requires_customer_signoff")}),
        ("External ids", {"fields": ("source", "external_id"), "classes": ["collapse"]}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ["collapse"]}),
    )
    # Once a contract is live, its commercial terms change through approved change orders only
    # (the model and a database trigger refuse any other write; this keeps the form honest).
    TERMS_LOCKED_AFTER_DRAFT = CONTRACT_TERMS

    def get_readonly_fields(self, request, obj=None):
        readonly = [*super().get_readonly_fields(request, obj), "created_at", "updated_at"]
        if contract_terms_locked(obj):
            readonly += [f for f in self.TERMS_LOCKED_AFTER_DRAFT if f not in readonly]
        return readonly

    def save_model(self, request, obj, form, change):
        try:
            super().save_model(request, obj, form, change)
        except ContractTermsLockedError as exc:  # a stale form (the contract went live meanwhile)
            raise PermissionDenied(exc.message) from exc

    @admin.display(description="Cap", ordering="cap")
    def money_cap(self, obj: Contract):
        return money(obj.cap, obj.currency) if obj.cap is not None else "—"


class ContractRateForm(EffectiveDatedRateForm):
    def clean(self):
        cleaned = super().clean()
        contract = cleaned.get("contract") or getattr(self.instance, "contract", None)
        if contract_terms_locked(contract):
            raise forms.ValidationError(
                f"Contract {contract.code} is {contract.get_status_display().lower()}: its rates change only "
                "through an approved change order. Raise a change order with the new rate."
            )
        return cleaned


@admin.register(ContractRate)
class ContractRateAdmin(BillableHistoryAdmin):
    """Rates of draft contracts; a live contract's rates are read-only here (approved change orders add them)."""

    form = ContractRateForm
    list_display = ("contract", "role", "person", "num_rate", "effective_from", "effective_to", "change_order")
    list_filter = ("role",)
    search_fields = ("contract__code", "role__code", "person__name", "change_order__code")
    list_select_related = ("contract", "role", "person", "change_order__contract")
    autocomplete_fields = ("contract", "role", "person")
    date_hierarchy = "effective_from"

    @admin.display(description="Hourly rate", ordering="rate")
    def num_rate(self, obj: ContractRate):
        return money(obj.rate, obj.contract.currency)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and contract_terms_locked(obj.contract):
            return False
        return super().has_change_permission(request, obj)

    has_delete_permission = has_change_permission


@admin.register(ChangeOrder)
class ChangeOrderAdmin(BillableHistoryAdmin):
    list_display = ("__str__", "contract", "description_short", "money_cap_delta", "status", "submitted_by",
                    "submitted_at", "decided_by", "decided_at")
    list_filter = ("status", ManagedByMeFilter, "contract__entity")
    search_fields = ("code", "contract__code", "description")
    list_select_related = ("contract", "submitted_by", "decided_by")
    autocomplete_fields = ("contract",)
    date_hierarchy = "created_at"
    inlines = [ChangeOrderRateInline, ChangeOrderMilestoneInline, TransitionLogInline]
    readonly_fields = ("submitted_by", "submitted_at", "decided_by", "decided_at", "decision_reason",
                       "created_at", "updated_at")
    actions = [
        service_action(module_path="billing.services.change_orders", func_name="change_order_submit",
                       kwarg="change_order", description="Submit selected change orders", done="submitted"),
        service_action(module_path="billing.services.change_orders", func_name="change_order_approve",
                       kwarg="change_order", description="Approve selected change orders", done="approved"),
        service_action_with_reason(module_path="billing.services.change_orders", func_name="change_order_reject",
                                   kwarg="change_order", description="Reject selected change orders (with a reason)",
                                   done="rejected"),
    ]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status != ChangeOrder.Status.DRAFT:
            # What was submitted is what gets decided; only the signature can follow.
            readonly += [f for f in ("contract", "code", "description", "cap_delta", *CHANGE_ORDER_TERMS)
                         if f not in readonly]
        return readonly

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.status != ChangeOrder.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="Description")
    def description_short(self, obj: ChangeOrder) -> str:
        return (obj.description[:80] + "…") if len(obj.description) > 80 else obj.description

    @admin.display(description="Cap delta", ordering="cap_delta")
    def money_cap_delta(self, obj: ChangeOrder):
        return money(obj.cap_delta, obj.contract.currency)


@admin.register(ChangeOrderRate)
class ChangeOrderRateAdmin(BillableModelAdmin):
    list_display = ("change_order", "role", "person", "num_rate", "effective_from", "effective_to")
    list_filter = ("change_order__status",)
    search_fields = ("change_order__code", "change_order__contract__code", "role__code", "person__name")
    list_select_related = ("change_order__contract", "role", "person")
    autocomplete_fields = ("change_order", "role", "person")

    @admin.display(description="Hourly rate", ordering="rate")
    def num_rate(self, obj: ChangeOrderRate):
        return money(obj.rate, obj.change_order.contract.currency)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.change_order.status != ChangeOrder.Status.DRAFT:
            return False
        return super().has_change_permission(request, obj)

    has_delete_permission = has_change_permission


@admin.register(ChangeOrderMilestone)
class ChangeOrderMilestoneAdmin(BillableModelAdmin):
    list_display = ("change_order", "project", "name", "money_amount", "due_date")
    list_filter = ("change_order__status",)
    search_fields = ("name", "change_order__code", "project__code")
    list_select_related = ("change_order__contract", "project")
    autocomplete_fields = ("change_order", "project")

    @admin.display(description="Amount", ordering="amount")
    def money_amount(self, obj: ChangeOrderMilestone):
        return money(obj.amount, obj.change_order.contract.currency)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.change_order.status != ChangeOrder.Status.DRAFT:
            return False
        return super().has_change_permission(request, obj)

    has_delete_permission = has_change_permission


def _project_action(name: str, description: str, done: str):
    return service_action(module_path="billing.services.projects", func_name=f"project_{name}",
                          kwarg="project", description=description, done=done)


@admin.register(Project)
class ProjectAdmin(BillableHistoryAdmin):
    list_display = ("code", "name", "contract", "client", "business_unit", "project_manager", "status")
    list_filter = ("status", ManagedByMeFilter, "business_unit", "contract__entity")
    search_fields = ("code", "name", "contract__code", "contract__client__legal_name", "external_id")
    list_select_related = ("contract__client", "project_manager")
    autocomplete_fields = ("contract", "project_manager")
    inlines = [TransitionLogInline]
    readonly_fields = ("created_at", "updated_at")
    actions = [
        _project_action("activate", "Activate selected projects", "activated"),
        _project_action("hold", "Put selected projects on hold", "put on hold"),
        _project_action("complete", "Complete selected projects", "completed"),
        _project_action("close", "Close selected projects", "closed"),
    ]

    @admin.display(description="Client", ordering="contract__client__code")
    def client(self, obj: Project):
        return obj.contract.client


# --- delivered work ----------------------------------------------------------------------------


class _WorkAdmin(BillableHistoryAdmin):
    """Time entries and expenses: editable as drafts (or rejected, to fix), then locked."""

    EDITABLE = (TimeEntry.Status.DRAFT, TimeEntry.Status.REJECTED)
    list_filter = ("status", MineFilter, ManagedByMeFilter, "billable", "project__contract__client")
    search_fields = ("person__name", "person__code", "project__code", "description", "external_id")
    list_select_related = ("person", "project", "approved_by")
    autocomplete_fields = ("person", "project")
    date_hierarchy = "date"
    inlines = [TransitionLogInline]
    readonly_fields = ("submitted_at", "approved_by", "approved_at", "rejection_reason", "invoice_line",
                       "created_at", "updated_at")
    actions = [work_submit, work_approve, work_reject]

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.status not in self.EDITABLE:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.status != TimeEntry.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)


@admin.register(TimeEntry)
class TimeEntryAdmin(_WorkAdmin):
    list_display = ("date", "person", "project", "num_hours", "billable", "status", "description", "approved_by")

    @admin.display(description="Hours", ordering="hours")
    def num_hours(self, obj: TimeEntry):
        return obj.hours


@admin.register(Expense)
class ExpenseAdmin(_WorkAdmin):
    list_display = ("date", "person", "project", "category", "money_amount", "billable", "status", "approved_by")
    list_filter = ("status", MineFilter, ManagedByMeFilter, "category", "billable", "currency")

    @admin.display(description="Amount", ordering="amount")
    def money_amount(self, obj: Expense):
        return money(obj.amount, obj.currency)


@admin.register(Milestone)
class MilestoneAdmin(BillableHistoryAdmin):
    list_display = ("project", "name", "money_amount", "due_date", "status", "completed_by", "approved_by")
    list_filter = ("status", ManagedByMeFilter, "project__contract__client")
    search_fields = ("name", "project__code", "project__name", "external_id")
    list_select_related = ("project__contract", "completed_by", "approved_by")
    autocomplete_fields = ("project",)
    date_hierarchy = "due_date"
    inlines = [TransitionLogInline]
    readonly_fields = ("completed_by", "completed_at", "approved_by", "approved_at", "change_order",
                       "invoice_line", "created_at", "updated_at")
    actions = [
        service_action(module_path="billing.services.milestones", func_name="milestone_complete",
                       kwarg="milestone", description="Mark selected milestones completed", done="completed",
                       extra=lambda m: {"evidence": m.evidence}),
        service_action(module_path="billing.services.milestones", func_name="milestone_approve",
                       kwarg="milestone", description="Approve selected milestones", done="approved"),
    ]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status != Milestone.Status.PLANNED:
            readonly += [f for f in ("project", "name", "amount", "due_date") if f not in readonly]
        return readonly

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.status in (Milestone.Status.APPROVED, Milestone.Status.INVOICED):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.status != Milestone.Status.PLANNED:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="Amount", ordering="amount")
    def money_amount(self, obj: Milestone):
        return money(obj.amount, obj.project.contract.currency)


# --- invoices --------------------------------------------------------------------------------


@admin.register(Invoice)
class InvoiceAdmin(BillableHistoryAdmin):
    list_display = ("display_number", "kind", "client", "contract", "status", "issue_date", "due_date",
                    "money_subtotal", "money_total")
    list_filter = ("status", ExceptionCodeFilter, OverdueFilter, "kind", "entity", "currency")
    search_fields = ("number", "client__code", "client__legal_name", "contract__code", "po_number", "erp_id")
    list_select_related = ("client", "contract")
    autocomplete_fields = ("entity", "client", "contract", "project")
    raw_id_fields = ("credit_of",)
    date_hierarchy = "issue_date"
    inlines = [InvoiceLineInline, InvoiceTaxInline, InvoiceExceptionInline, TransitionLogInline]
    readonly_fields = ("number", "subtotal", "tax_total", "total", "prepared_by", "approved_by", "approved_at",
                       "billing_run", "erp_id", "retainer_period", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("number", "kind", "credit_of", "status", "entity", "client", "contract", "project")}),
        ("Dates", {"fields": ("period_start", "period_end", "retainer_period", "issue_date", "due_date")}),
        ("Amounts", {"fields": ("currency", "subtotal", "tax_total", "total", "po_number", "notes")}),
        ("Workflow", {"fields": ("prepared_by", "approved_by", "approved_at", "billing_run", "erp_id")}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ["collapse"]}),
    )

    @admin.display(description="Number", ordering="number")
    def display_number(self, obj: Invoice) -> str:
        return obj.display_number

    @admin.display(description="Subtotal", ordering="subtotal")
    def money_subtotal(self, obj: Invoice):
        return money(obj.subtotal, obj.currency)

    @admin.display(description="Total", ordering="total")
    def money_total(self, obj: Invoice):
        return money(obj.total, obj.currency)

    def has_change_permission(self, request, obj=None) -> bool:
        if invoice_is_locked(obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # drafts are cancelled (a service), never deleted


class _InvoicePartAdmin(BillableModelAdmin):
    """Lines and taxes: editable only on an unnumbered draft; adding to a locked invoice is refused."""

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and invoice_is_locked(obj.invoice):
            return False
        return super().has_change_permission(request, obj)

    has_delete_permission = has_change_permission

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)

        class LockedInvoiceGuard(form):
            def clean(self):
                cleaned = super().clean()
                invoice = cleaned.get("invoice")
                if invoice is not None and invoice_is_locked(invoice):
                    raise forms.ValidationError(
                        f"Invoice {invoice.display_number} is {invoice.get_status_display().lower()} and can no "
                        "longer change; corrections are made with a credit note."
                    )
                return cleaned

        return LockedInvoiceGuard


@admin.register(InvoiceLine)
class InvoiceLineAdmin(_InvoicePartAdmin):
    list_display = ("invoice", "position", "kind", "project", "role", "num_quantity", "money_unit_price",
                    "money_amount", "rate_source")
    list_filter = ("kind", "rate_source", "invoice__status")
    search_fields = ("invoice__number", "description", "project__code", "rate_source_label")
    list_select_related = ("invoice", "project", "role")
    autocomplete_fields = ("invoice", "project", "role")
    raw_id_fields = ("credited_line",)

    @admin.display(description="Quantity", ordering="quantity")
    def num_quantity(self, obj: InvoiceLine):
        return obj.quantity

    @admin.display(description="Unit price", ordering="unit_price")
    def money_unit_price(self, obj: InvoiceLine):
        return money(obj.unit_price, obj.invoice.currency)

    @admin.display(description="Amount", ordering="amount")
    def money_amount(self, obj: InvoiceLine):
        return money(obj.amount, obj.invoice.currency)


@admin.register(InvoiceTax)
class InvoiceTaxAdmin(_InvoicePartAdmin):
    list_display = ("invoice", "category", "num_rate", "money_base", "money_amount")
    list_filter = ("category", "invoice__status")
    search_fields = ("invoice__number", "legal_note")
    list_select_related = ("invoice",)
    autocomplete_fields = ("invoice",)

    @admin.display(description="Rate %", ordering="rate")
    def num_rate(self, obj: InvoiceTax):
        return obj.rate

    @admin.display(description="Base", ordering="base")
    def money_base(self, obj: InvoiceTax):
        return money(obj.base, obj.invoice.currency)

    @admin.display(description="Tax", ordering="amount")
    def money_amount(self, obj: InvoiceTax):
        return money(obj.amount, obj.invoice.currency)


@admin.register(InvoiceException)
class InvoiceExceptionAdmin(BillableHistoryAdmin):
    """Validation findings. Only the owner can be assigned here; resolving and overriding
    (controller, with a reason) are services."""

    list_display = ("invoice", "code", "severity", "state", "money_amount", "owner", "created_at")
    list_filter = ("state", "severity", "code")
    search_fields = ("invoice__number", "code", "message")
    list_select_related = ("invoice", "owner")
    autocomplete_fields = ("owner",)
    date_hierarchy = "created_at"
    readonly_fields = ("invoice", "code", "severity", "message", "fix_hint", "fix_url", "amount", "state",
                       "resolved_by", "resolved_at", "resolution_reason", "created_at", "updated_at")

    @admin.display(description="Amount", ordering="amount")
    def money_amount(self, obj: InvoiceException):
        return money(obj.amount, obj.invoice.currency) if obj.amount is not None else "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class _ServiceWrittenAdmin:
    """Written only by services (numbering, billing runs, payments): read-only for everyone."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(_ServiceWrittenAdmin, BillableModelAdmin):
    """The delivery log: every e-mail of an issued invoice, written by the delivery service only."""

    list_display = ("invoice", "channel", "to", "attempted_at", "result", "receipt", "message_id", "triggered_by")
    list_filter = ("channel", "result", "receipt")
    search_fields = ("invoice__number", "to", "message_id")
    list_select_related = ("invoice", "triggered_by")
    date_hierarchy = "attempted_at"


@admin.register(BillingRunChunk)
class BillingRunChunkAdmin(_ServiceWrittenAdmin, BillableModelAdmin):
    """The chunks of billing runs fanned out to workers (ADR 0115): written by the run only."""

    list_display = ("run", "position", "status", "done_at")
    list_filter = ("status",)
    search_fields = ("run__id",)
    list_select_related = ("run",)
    date_hierarchy = "done_at"


@admin.register(TaxEngineRecording)
class TaxEngineRecordingAdmin(_ServiceWrittenAdmin, BillableModelAdmin):
    """Approved invoices reported (or still to report) to the tax engine; pending ones are retried on a schedule."""

    list_display = ("invoice", "status", "attempts", "next_attempt_at", "done_at", "last_error")
    list_filter = ("status",)
    search_fields = ("invoice__number",)
    list_select_related = ("invoice",)
    date_hierarchy = "created_at"


@admin.register(VatCheck)
class VatCheckAdmin(_ServiceWrittenAdmin, BillableModelAdmin):
    """VIES consultations, written by billing.services.vat_checks only: a record, never edited."""

    list_display = ("client", "vat_id", "result", "request_date", "consultation_number", "checked_at", "checked_by")
    list_filter = ("result",)
    search_fields = ("client__code", "vat_id", "consultation_number")
    list_select_related = ("client", "checked_by")
    date_hierarchy = "checked_at"


@admin.register(InvoiceNumberSequence)
class InvoiceNumberSequenceAdmin(_ServiceWrittenAdmin, BillableModelAdmin):
    """The gapless counters. Editing one would break gaplessness, so nobody can."""

    list_display = ("entity", "year", "series", "num_last_number")
    list_filter = ("entity", "year", "series")
    search_fields = ("entity__code",)
    list_select_related = ("entity",)

    @admin.display(description="Last number", ordering="last_number")
    def num_last_number(self, obj: InvoiceNumberSequence):
        return obj.last_number


@admin.register(Payment)
class PaymentAdmin(_ServiceWrittenAdmin, BillableHistoryAdmin):
    """Payments are applied by the payment service (webhook, analyst screen), which also moves
    the invoice to partially paid / paid; adding one here would skip that."""

    list_display = ("date", "external_reference", "invoice", "money_amount", "recorded_by", "created_at")
    list_filter = ("currency",)
    search_fields = ("external_reference", "invoice__number", "invoice__client__legal_name")
    list_select_related = ("invoice", "recorded_by")
    date_hierarchy = "date"

    @admin.display(description="Amount", ordering="amount")
    def money_amount(self, obj: Payment):
        return money(obj.amount, obj.currency)


@admin.register(BillingRun)
class BillingRunAdmin(_ServiceWrittenAdmin, BillableModelAdmin):
    list_display = ("__str__", "period_start", "period_end", "run_date", "status", "num_progress", "started_by",
                    "started_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("=id", "error")
    list_select_related = ("started_by",)
    date_hierarchy = "created_at"

    @admin.display(description="Contracts done")
    def num_progress(self, obj: BillingRun) -> str:
        return f"{obj.contracts_done} / {obj.contracts_total}"


@admin.register(InvoiceDocument)
class InvoiceDocumentAdmin(_ServiceWrittenAdmin, BillableModelAdmin):
    """Issued PDFs and e-invoices: stored once by `billing.services.documents`, never changed."""

    list_display = ("invoice", "kind", "size", "sha256", "created_at", "created_by")
    list_filter = ("kind",)
    search_fields = ("invoice__number", "sha256")
    list_select_related = ("invoice", "created_by")
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "invoice", "kind", "download", "size", "sha256", "generator", "created_at", "created_by"
    )  # never the content: it is served by the download views

    def get_queryset(self, request):
        return super().get_queryset(request).defer("content")

    @admin.display(description="File")
    def download(self, obj: InvoiceDocument):
        view = "billing:invoice_pdf" if obj.kind == InvoiceDocument.Kind.PDF else "billing:invoice_ubl"
        return format_html('<a href="{}">{}</a>', reverse(view, args=[obj.invoice_id]), obj.filename)
