"""Serializers of the inbound-sync API: the records as Billable holds them (out), and the documented input.

Input is validated by the service (`integrations.services.inbound`), not here: the input
serializers only describe the fields for the OpenAPI schema, so the rules live in one place
and the CSV import, the bulk calls and the single upserts answer alike.
"""

from __future__ import annotations

from rest_framework import serializers

from billing.models import (
    ChangeOrder,
    Client,
    Contract,
    ContractRate,
    Expense,
    Milestone,
    Person,
    Project,
    PurchaseOrder,
    TimeEntry,
)


class _Synced(serializers.ModelSerializer):
    source = serializers.CharField(read_only=True)
    external_id = serializers.CharField(read_only=True)


class ClientOut(_Synced):
    class Meta:
        model = Client
        fields = [
            "id", "source", "external_id", "code", "legal_name", "address_line1", "address_line2", "city",
            "postal_code", "country", "vat_id", "currency", "payment_terms_days", "po_required", "billing_emails",
            "credit_hold", "einvoice_by_email", "consolidate_invoices", "erp_id", "updated_at",
        ]
        read_only_fields = fields


class PurchaseOrderOut(_Synced):
    client_code = serializers.CharField(source="client.code", read_only=True)
    invoiced = serializers.SerializerMethodField(help_text="Committed: invoices from approval onwards, less "
                                                           "issued credit notes (before tax).")

    class Meta:
        model = PurchaseOrder
        fields = ["id", "source", "external_id", "number", "client_code", "currency", "amount", "valid_from",
                  "valid_to", "raised_by", "notes", "invoiced", "updated_at"]
        read_only_fields = fields

    def get_invoiced(self, po: PurchaseOrder) -> str:
        from billing.services.purchase_orders import committed_drawdown

        return str(committed_drawdown([po.pk])[po.pk])


class PersonOut(_Synced):
    role_code = serializers.CharField(source="role.code", read_only=True)
    home_entity_code = serializers.CharField(source="home_entity.code", read_only=True, allow_null=True,
                                             default=None)

    class Meta:
        model = Person
        fields = ["id", "source", "external_id", "code", "name", "email", "active", "role_code", "home_entity_code",
                  "updated_at"]
        read_only_fields = fields


class ContractRateOut(serializers.ModelSerializer):
    role_code = serializers.CharField(source="role.code", read_only=True, allow_null=True, default=None)
    person_code = serializers.CharField(source="person.code", read_only=True, allow_null=True, default=None)
    change_order = serializers.CharField(source="change_order.code", read_only=True, allow_null=True, default=None)

    class Meta:
        model = ContractRate
        fields = ["role_code", "person_code", "rate", "effective_from", "effective_to", "change_order"]
        read_only_fields = fields


class ChangeOrderOut(serializers.ModelSerializer):
    class Meta:
        model = ChangeOrder
        fields = ["code", "description", "cap_delta", "new_cap", "new_payment_terms_days", "new_po_number",
                  "new_billing_frequency", "signed_on", "status", "submitted_at", "decided_at"]
        read_only_fields = fields


class ContractOut(_Synced):
    client_code = serializers.CharField(source="client.code", read_only=True)
    entity_code = serializers.CharField(source="entity.code", read_only=True)
    rate_card_code = serializers.CharField(source="rate_card.code", read_only=True, allow_null=True, default=None)
    rates = ContractRateOut(many=True, read_only=True)
    change_orders = ChangeOrderOut(many=True, read_only=True)
    purchase_order_number = serializers.CharField(source="purchase_order.number", read_only=True, allow_null=True,
                                                  default=None)

    class Meta:
        model = Contract
        fields = [
            "id", "source", "external_id", "code", "name", "client_code", "entity_code", "billing_model",
            "currency", "rate_card_code", "cap", "expense_markup_pct", "discount_pct", "po_number",
            "purchase_order_number",
            "payment_terms_days", "billing_frequency", "invoice_per_project", "retainer_amount", "included_hours",
            "status", "rates", "change_orders", "updated_at",
        ]
        read_only_fields = fields


class ProjectOut(_Synced):
    contract_code = serializers.CharField(source="contract.code", read_only=True)
    project_manager_username = serializers.CharField(source="project_manager.username", read_only=True,
                                                     allow_null=True, default=None)

    class Meta:
        model = Project
        fields = ["id", "source", "external_id", "code", "name", "business_unit", "contract_code",
                  "project_manager_username", "status", "updated_at"]
        read_only_fields = fields


class _WorkOut(_Synced):
    person_code = serializers.CharField(source="person.code", read_only=True)
    project_code = serializers.CharField(source="project.code", read_only=True)
    invoiced = serializers.SerializerMethodField()

    def get_invoiced(self, obj) -> bool:
        return obj.invoice_line_id is not None


class TimeEntryOut(_WorkOut):
    class Meta:
        model = TimeEntry
        fields = ["id", "source", "external_id", "person_code", "project_code", "date", "hours", "description",
                  "billable", "status", "rejection_reason", "invoiced", "updated_at"]
        read_only_fields = fields


class ExpenseOut(_WorkOut):
    class Meta:
        model = Expense
        fields = ["id", "source", "external_id", "person_code", "project_code", "date", "category", "amount",
                  "currency", "description", "billable", "status", "rejection_reason", "invoiced", "updated_at"]
        read_only_fields = fields


class MilestoneOut(_Synced):
    project_code = serializers.CharField(source="project.code", read_only=True)
    invoiced = serializers.SerializerMethodField()

    class Meta:
        model = Milestone
        fields = ["id", "source", "external_id", "project_code", "name", "amount", "due_date", "evidence", "status",
                  "invoiced", "updated_at"]
        read_only_fields = fields

    def get_invoiced(self, obj) -> bool:
        return obj.invoice_line_id is not None


# --- input (documentation of the record fields; the service validates) ----------------------------------


def _doc(**fields: serializers.Field) -> dict[str, serializers.Field]:
    return {"external_id": serializers.CharField(max_length=100, help_text="The source system's id."), **fields}


def _opt_str(help_text: str = "") -> serializers.CharField:
    return serializers.CharField(required=False, allow_blank=True, help_text=help_text)


def _opt_dec(help_text: str = "") -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=18, decimal_places=4, required=False, allow_null=True,
                                    coerce_to_string=True, help_text=help_text)


_PERSON = {
    "person_external_id": _opt_str("Who worked: external id of the same source,"),
    "person_code": _opt_str("or Billable's person code,"),
    "person_email": _opt_str("or e-mail."),
}
_PROJECT = {
    "project_code": _opt_str("The project by code,"),
    "project_external_id": _opt_str("or by external id of the same source."),
}

ClientIn = type("ClientIn", (serializers.Serializer,), _doc(
    code=serializers.CharField(max_length=40), legal_name=serializers.CharField(max_length=200),
    address_line1=_opt_str(), address_line2=_opt_str(), city=_opt_str(), postal_code=_opt_str(),
    country=serializers.CharField(max_length=2, help_text="ISO 3166 alpha-2."),
    vat_id=_opt_str("Validated for the country."), currency=serializers.CharField(max_length=3),
    payment_terms_days=serializers.IntegerField(required=False, min_value=0),
    po_required=serializers.BooleanField(required=False), billing_emails=_opt_str("Comma-separated."),
    credit_hold=serializers.BooleanField(required=False), einvoice_by_email=serializers.BooleanField(required=False),
    consolidate_invoices=serializers.BooleanField(
        required=False, help_text="One invoice per (entity, currency, PO) per billing run for all its contracts."
    ),
))
PurchaseOrderIn = type("PurchaseOrderIn", (serializers.Serializer,), _doc(
    number=serializers.CharField(max_length=60, help_text="The PO number the client's AP expects."),
    client_external_id=_opt_str("The client by external id, or"), client_code=_opt_str("by code."),
    currency=serializers.CharField(max_length=3),
    amount=serializers.DecimalField(max_digits=18, decimal_places=2, coerce_to_string=True,
                                    help_text="Before tax; never below what is already invoiced on it."),
    valid_from=serializers.DateField(), valid_to=serializers.DateField(required=False, allow_null=True),
    raised_by=_opt_str("Who at the client raises the PO (named in the PO_EXCEEDED fix hint)."), notes=_opt_str(),
))
PersonIn = type("PersonIn", (serializers.Serializer,), _doc(
    code=serializers.CharField(max_length=60), name=serializers.CharField(max_length=200), email=_opt_str(),
    active=serializers.BooleanField(required=False), role_code=serializers.CharField(),
    home_entity_code=_opt_str(),
))
_RateIn = type("ContractRateIn", (serializers.Serializer,), {
    "role_code": _opt_str("A role, or"), "person_external_id": _opt_str("a person."), "person_code": _opt_str(),
    "rate": serializers.DecimalField(max_digits=18, decimal_places=4, coerce_to_string=True),
    "effective_from": serializers.DateField(), "effective_to": serializers.DateField(required=False, allow_null=True),
})
_ChangeOrderMilestoneIn = type("ChangeOrderMilestoneIn", (serializers.Serializer,), {
    "project_code": serializers.CharField(), "name": serializers.CharField(),
    "amount": serializers.DecimalField(max_digits=18, decimal_places=2, coerce_to_string=True),
    "due_date": serializers.DateField(required=False, allow_null=True),
})
_ChangeOrderIn = type("ChangeOrderIn", (serializers.Serializer,), {
    "code": serializers.CharField(), "description": _opt_str(), "cap_delta": _opt_dec(),
    "new_cap": _opt_dec("Sets a cap on a contract without one."),
    "new_payment_terms_days": serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=365),
    "new_po_number": _opt_str("New PO number."),
    "new_billing_frequency": serializers.ChoiceField(choices=Contract.Frequency.choices, required=False,
                                                     allow_blank=True),
    "signed_on": serializers.DateField(required=False, allow_null=True),
    "status": serializers.CharField(required=False, help_text="draft (default) or submitted."),
    "rates": _RateIn(many=True, required=False), "milestones": _ChangeOrderMilestoneIn(many=True, required=False),
})
ContractIn = type("ContractIn", (serializers.Serializer,), _doc(
    code=serializers.CharField(max_length=40), name=_opt_str(),
    client_external_id=_opt_str("The client by external id, or"), client_code=_opt_str("by code."),
    entity_code=serializers.CharField(), billing_model=serializers.ChoiceField(choices=Contract.BillingModel.choices),
    currency=serializers.CharField(max_length=3), rate_card_code=_opt_str(), cap=_opt_dec(),
    expense_markup_pct=_opt_dec(), discount_pct=_opt_dec(), po_number=_opt_str(),
    purchase_order_number=_opt_str("A PO of the contract's client it draws on (sync the PO first); its number "
                                   "becomes the contract's PO number."),
    payment_terms_days=serializers.IntegerField(required=False, allow_null=True, min_value=0),
    billing_frequency=serializers.ChoiceField(choices=Contract.Frequency.choices, required=False),
    invoice_per_project=serializers.BooleanField(required=False), retainer_amount=_opt_dec(),
    included_hours=_opt_dec(),
    status=serializers.CharField(required=False, help_text="draft, active or suspended (closed in Billable)."),
    rates=_RateIn(many=True, required=False, help_text="Upserted by role/person and effective_from; never deleted."),
    change_orders=_ChangeOrderIn(many=True, required=False),
))
ProjectIn = type("ProjectIn", (serializers.Serializer,), _doc(
    code=serializers.CharField(max_length=40), name=_opt_str(), business_unit=_opt_str(),
    contract_external_id=_opt_str("The contract by external id, or"), contract_code=_opt_str("by number."),
    project_manager_email=_opt_str(), project_manager_username=_opt_str(),
    status=serializers.CharField(required=False, help_text="planned, active, on_hold or completed."),
))
TimeEntryIn = type("TimeEntryIn", (serializers.Serializer,), _doc(
    **_PERSON, **_PROJECT, date=serializers.DateField(),
    hours=serializers.DecimalField(max_digits=7, decimal_places=2, coerce_to_string=True),
    description=_opt_str(), billable=serializers.BooleanField(required=False),
    status=serializers.CharField(required=False, help_text="submitted (default: the project's manager approves "
                                                            "in Billable) or draft."),
))
ExpenseIn = type("ExpenseIn", (serializers.Serializer,), _doc(
    **_PERSON, **_PROJECT, date=serializers.DateField(),
    amount=serializers.DecimalField(max_digits=18, decimal_places=2, coerce_to_string=True),
    currency=serializers.CharField(max_length=3), category=serializers.ChoiceField(choices=Expense.Category.choices),
    description=_opt_str(), billable=serializers.BooleanField(required=False),
    status=serializers.CharField(required=False, help_text="submitted (default) or draft."),
))
MilestoneIn = type("MilestoneIn", (serializers.Serializer,), _doc(
    **_PROJECT, name=serializers.CharField(max_length=200),
    amount=serializers.DecimalField(max_digits=18, decimal_places=2, coerce_to_string=True),
    due_date=serializers.DateField(required=False, allow_null=True), evidence=_opt_str(),
))


class RecordResultOut(serializers.Serializer):
    index = serializers.IntegerField()
    external_id = serializers.CharField(allow_blank=True)
    result = serializers.CharField(help_text="created, updated, unchanged or error.")
    id = serializers.IntegerField(allow_null=True)
    field_errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    code = serializers.CharField(required=False, help_text="Errors only.")
    message = serializers.CharField(required=False, help_text="Errors only.")


class BulkOut(serializers.Serializer):
    import_id = serializers.IntegerField(help_text="The ImportBatch recording this call.")
    status = serializers.CharField(help_text="done, failed (nothing saved: all or nothing) or partial.")
    saved = serializers.BooleanField(help_text="Whether anything was written.")
    partial = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True, help_text="A batch-level error, if any.")
    summary = serializers.DictField(child=serializers.IntegerField())
    results = RecordResultOut(many=True)
