"""Inbound sync (docs/rules/integrations.md): upserts of the records CRM and PSA own, keyed by `(source, external_id)`.

One engine serves the single-record API, the bulk API (≤ 1,000 records a call) and the
CSV import of PSA time exports (`integrations.services.csv_import`): `upsert_records`
takes a list of plain dicts (JSON or CSV values) and answers per record `created`,
`updated`, `unchanged` or `error` with field errors. See docs/decisions/0021-inbound-sync.md.

Why it is shaped like this:

- **All or nothing by default.** The batch is one transaction and every record's writes run
  in their own savepoint, so a bad record (even one the database refuses) never hides the
  results of the others; any error then rolls the whole batch back. `partial=True` keeps the
  good records (the savepoint of a bad one is rolled back alone). A dry run rolls back always.
- **Bounded reads.** Existing rows are fetched (and locked) by external id in one query per
  model, and every reference (client, person, project, ...) in one query per kind of key.
  New time and expenses are inserted together after the loop, plain changes of them written
  together (rows and history rows in bulk); only records that move through a transition, and
  master data, are written one by one.
- **The domain holds.** Values are validated with the model (`full_clean`; the unique and
  check constraints are enforced by the batch look-ups and by the database under the
  savepoint, which keeps reads constant); invoiced work is never changed; the 24 h per
  person and day rule is checked over the database and the batch under a lock on the
  people's rows; work is booked only on active projects of active contracts; imported time
  and expenses arrive `submitted` and wait for the project manager's approval in Billable
  (the approval requests are opened for the batch at once).
- **Audited like people.** Every save goes through `save_audited` with the acting user (the
  integration client's service user, or the finance user of the CSV page) and a reason that
  names the source; state changes go through the FSM transitions (django-fsm-log).
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django_fsm import FSMFieldMixin

from billing.models import (
    ChangeOrder,
    ChangeOrderMilestone,
    ChangeOrderRate,
    Client,
    Contract,
    ContractRate,
    Expense,
    LegalEntity,
    Milestone,
    Person,
    Project,
    PurchaseOrder,
    RateCard,
    Role,
    TimeEntry,
)
from billing.models.contracts import CONTRACT_TERMS
from billing.models.work import MAX_HOURS_PER_DAY, WorkStatus, booking_refusal
from billing.services.posting import erp_posting_enabled
from billing.vat import vat_id_is_valid
from integrations.models import ImportBatch, IntegrationClient
from kernel.audit import save_audited
from kernel.errors import ApplicationError
from kernel.workflow import apply_transition

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any

MAX_BULK_RECORDS = 1000
ZERO_HOURS = Decimal("0")
RESOURCES = ("clients", "people", "purchase_orders", "contracts", "projects", "time_entries", "expenses", "milestones")


class Result:
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    ERROR = "error"


@dataclass
class RecordResult:
    """What became of one record of a batch (its position, its external id, the outcome)."""

    index: int
    external_id: str
    result: str
    id: int | None = None
    code: str = ""
    message: str = ""
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "index": self.index,
            "external_id": self.external_id,
            "result": self.result,
            "id": self.id,
            "field_errors": self.field_errors,
        }
        if self.result == Result.ERROR:
            data["code"] = self.code
            data["message"] = self.message
        if self.line is not None:
            data["line"] = self.line
        return data


@dataclass
class UpsertOutcome:
    """The answer to a batch: per-record results, whether anything was kept, the ImportBatch row."""

    resource: str
    results: list[RecordResult]
    saved: bool
    dry_run: bool
    partial: bool
    batch: ImportBatch | None = None
    error: str = ""

    def count(self, result: str) -> int:
        return sum(1 for r in self.results if r.result == result)

    @property
    def errors(self) -> list[RecordResult]:
        return [r for r in self.results if r.result == Result.ERROR]

    @property
    def status(self) -> str:
        if self.dry_run:
            return ImportBatch.Status.DRY_RUN
        if not self.errors and not self.error:
            return ImportBatch.Status.DONE
        if self.saved and self.partial:
            return ImportBatch.Status.PARTIAL
        return ImportBatch.Status.FAILED

    def summary(self) -> dict[str, int]:
        return {
            "total": len(self.results),
            Result.CREATED: self.count(Result.CREATED),
            Result.UPDATED: self.count(Result.UPDATED),
            Result.UNCHANGED: self.count(Result.UNCHANGED),
            Result.ERROR: self.count(Result.ERROR),
        }


class _RecordError(ApplicationError):
    """A record refused (code, message, field errors): becomes its `error` result, never escapes."""


def _error(message: str, *, code: str = "invalid", field_errors: dict | None = None) -> _RecordError:
    return _RecordError(message, code=code, field_errors=field_errors)


# --- value handling ---------------------------------------------------------------------------------

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off", ""}


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower() if value is not None else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _error(f"{name}: {value!r} is not yes/no.", field_errors={name: ["Use true or false."]})


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _validate(obj: models.Model, *, exclude: Iterable[str] = ()) -> None:
    """Model validation (field types, lengths, choices, validators, `clean()`) as a record error.

    Unlike `kernel.workflow.full_clean_or_raise` it skips the unique and check
    constraints and the foreign-key existence checks, which cost a query each per record:
    the batch look-ups resolve references and uniqueness, and the database enforces the
    constraints under the record's savepoint.
    """
    skip = set(exclude)
    for f in obj._meta.concrete_fields:
        if (isinstance(f, FSMFieldMixin) and f.protected) or f.is_relation:
            skip.add(f.name)
    try:
        obj.full_clean(exclude=sorted(skip), validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        field_errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        message = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in field_errors.items())
        raise _error(message, field_errors=field_errors) from exc


def _snapshot(obj: models.Model, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(obj, obj._meta.get_field(name).attname) for name in names}


def _changed(before: dict[str, Any], obj: models.Model) -> list[str]:
    return [name for name, old in before.items() if getattr(obj, obj._meta.get_field(name).attname) != old]


def _assign(obj: models.Model, record: dict[str, Any], names: Iterable[str]) -> None:
    """Set the record's values of `names` on `obj` (converted and checked later by `_validate`)."""
    for name in names:
        if name not in record:
            continue
        model_field = obj._meta.get_field(name)
        value = record[name]
        if isinstance(model_field, models.BooleanField):
            value = parse_bool(value, name)
        elif isinstance(value, str):
            value = value.strip()
            if value == "" and model_field.null:
                value = None
        elif value is None and not model_field.null and isinstance(model_field, models.CharField):
            value = ""
        setattr(obj, model_field.attname, value)


def _upper(record: dict[str, Any], *names: str) -> None:
    for name in names:
        if isinstance(record.get(name), str):
            record[name] = record[name].strip().upper()


# --- the batch context -----------------------------------------------------------------------------


@dataclass
class _Ctx:
    resource: str
    source: str
    user: Any
    reason: str
    existing: dict[str, Any] = field(default_factory=dict)  # external id → row of this source
    by_code: dict[str, Any] = field(default_factory=dict)  # code → row (adoption, uniqueness)
    refs: dict[str, dict[Any, Any]] = field(default_factory=dict)  # "kind:key" → value → object | AMBIGUOUS
    day_hours: dict[tuple[int, datetime.date], Decimal] = field(default_factory=dict)
    entry_hours: dict[int, tuple[int, datetime.date, Decimal]] = field(default_factory=dict)
    to_route: list[Any] = field(default_factory=list)  # work handed over for approval in this batch
    claimed_codes: dict[str, int] = field(default_factory=dict)  # code → index that took it in this batch
    pending: list[Any] = field(default_factory=list)  # new work, inserted together after the loop
    pending_updates: list[Any] = field(default_factory=list)  # changed work that keeps its status
    updated_fields: set[str] = field(default_factory=set)  # the fields those changes touch


AMBIGUOUS = object()


def _ref(ctx: _Ctx, kind: str, key: str, value: Any, name: str, label: str) -> Any:
    if value in ("", None):
        raise _error(f"{name} is required.", code="required", field_errors={name: ["Required."]})
    found = ctx.refs.get(f"{kind}:{key}", {}).get(value)
    if found is AMBIGUOUS:
        raise _error(
            f"{label} {value!r} matches more than one record; use a unique key.",
            code="ambiguous_reference",
            field_errors={name: ["Matches more than one record."]},
        )
    if found is None:
        raise _error(f"{label} {value!r} not found.", code="unknown_reference", field_errors={name: ["Not found."]})
    return found


def _index(rows: Iterable[Any], key: Callable[[Any], Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for row in rows:
        k = key(row)
        out[k] = AMBIGUOUS if k in out else row
    return out


def _values(records: Sequence[dict[str, Any]], name: str, *, lower: bool = False, upper: bool = False) -> set[str]:
    out = set()
    for record in records:
        value = _text(record.get(name))
        if value:
            out.add(value.lower() if lower else value.upper() if upper else value)
    return out


def _prefetch_by_external_id(ctx: _Ctx, model: type[models.Model], records: Sequence[dict], *related: str,
                             lock: bool = True) -> None:
    """The batch's existing rows, locked (in id order, so two batches cannot deadlock) until the batch ends.

    Without the lock a project manager approving an entry while the batch updates it could be
    overwritten by the batch's stale copy (or an entry billed meanwhile changed).
    """
    ids = _values(records, "external_id")
    qs = model._default_manager.filter(source=ctx.source, external_id__in=ids)
    if lock:
        qs = qs.select_for_update(of=("self",))
    if related:
        qs = qs.select_related(*related)
    ctx.existing = {row.external_id: row for row in qs.order_by("pk")}


def _prefetch_codes(ctx: _Ctx, model: type[models.Model], records: Sequence[dict], *related: str) -> None:
    codes = _values(records, "code")
    qs = model._default_manager.filter(code__in=codes)
    if related:
        qs = qs.select_related(*related)
    ctx.by_code = {row.code: row for row in qs}


def _find_or_adopt(ctx: _Ctx, model: type[models.Model], record: dict, index: int) -> Any | None:
    """The row of this external id; else a row with the record's code that has no external id yet (adopted).

    A code used by another synced row, or by another record of the batch, is refused.
    """
    external_id = record["external_id"]
    existing = ctx.existing.get(external_id)
    code = _text(record.get("code"))
    if code:
        taken_by = ctx.claimed_codes.get(code)
        if taken_by is not None and taken_by != index:
            raise _error(
                f"Code {code} is also used by record {taken_by} of this batch.",
                code="duplicate_code",
                field_errors={"code": ["Used twice in this batch."]},
            )
        holder = ctx.by_code.get(code)
        if holder is not None and (existing is None or holder.pk != existing.pk):
            if existing is None and not holder.external_id:
                existing = holder  # first sync of a record that was keyed in by hand: adopt it
            else:
                owner = f"{holder.source}:{holder.external_id}" if holder.external_id else "a record keyed in by hand"
                raise _error(
                    f"Code {code} already belongs to {owner}.",
                    code="duplicate_code",
                    field_errors={"code": ["Already used by another record."]},
                )
        ctx.claimed_codes[code] = index
    return existing


# --- master data: clients and people ----------------------------------------------------------------

CLIENT_FIELDS = (
    "code",
    "legal_name",
    "address_line1",
    "address_line2",
    "city",
    "postal_code",
    "country",
    "vat_id",
    "currency",
    "payment_terms_days",
    "po_required",
    "billing_emails",
    "credit_hold",
    "einvoice_by_email",
    "consolidate_invoices",
)


def _prefetch_clients(ctx: _Ctx, records: Sequence[dict]) -> None:
    _prefetch_by_external_id(ctx, Client, records)
    _prefetch_codes(ctx, Client, records)


def _enqueue_customer(client: Client, user: Any) -> None:
    """A new or changed customer goes to the ERP in the same transaction (when an ERP is configured).

    The outbox keys the message by a fingerprint of the customer document, so a client
    whose ERP-relevant data did not change is not sent twice.
    """
    if erp_posting_enabled():
        from integrations.services.outbox import outbox_enqueue_customer

        outbox_enqueue_customer(client=client, user=user)


def _apply_client(record: dict, existing: Client | None, ctx: _Ctx, index: int) -> tuple[Any, str]:
    _upper(record, "country", "currency", "vat_id")
    existing = _find_or_adopt(ctx, Client, record, index)
    obj = existing or Client(source=ctx.source, external_id=record["external_id"])
    before = _snapshot(obj, (*CLIENT_FIELDS, "source", "external_id")) if existing else {}
    _assign(obj, record, CLIENT_FIELDS)
    obj.source, obj.external_id = ctx.source, record["external_id"]
    _validate(obj)
    field_errors: dict[str, list[str]] = {}
    if obj.vat_id and not vat_id_is_valid(obj.vat_id, obj.country):
        field_errors["vat_id"] = [f"Not a valid VAT id for {obj.country}."]
    for email in obj.billing_email_list:
        try:
            validate_email(email)
        except ValidationError:
            field_errors.setdefault("billing_emails", []).append(f"{email!r} is not a valid address.")
    if field_errors:
        raise _error("; ".join(f"{k}: {' '.join(v)}" for k, v in field_errors.items()), field_errors=field_errors)
    if existing and not _changed(before, obj):
        return obj, Result.UNCHANGED
    save_audited(obj, user=ctx.user, reason=ctx.reason)
    _enqueue_customer(obj, ctx.user)
    return obj, Result.UPDATED if existing else Result.CREATED


PERSON_FIELDS = ("code", "name", "email", "active")


def _prefetch_people(ctx: _Ctx, records: Sequence[dict]) -> None:
    _prefetch_by_external_id(ctx, Person, records)
    _prefetch_codes(ctx, Person, records)
    ctx.refs["role:code"] = _index(Role.objects.filter(code__in=_values(records, "role_code")), lambda r: r.code)
    ctx.refs["entity:code"] = _index(
        LegalEntity.objects.filter(code__in=_values(records, "home_entity_code")), lambda r: r.code
    )


def _apply_person(record: dict, existing: Person | None, ctx: _Ctx, index: int) -> tuple[Any, str]:
    existing = _find_or_adopt(ctx, Person, record, index)
    obj = existing or Person(source=ctx.source, external_id=record["external_id"])
    before = _snapshot(obj, (*PERSON_FIELDS, "role", "home_entity", "source", "external_id")) if existing else {}
    _assign(obj, record, PERSON_FIELDS)
    obj.source, obj.external_id = ctx.source, record["external_id"]
    if "role_code" in record or existing is None:
        obj.role = _ref(ctx, "role", "code", _text(record.get("role_code")), "role_code", "Role")
    if "home_entity_code" in record:
        code = _text(record.get("home_entity_code"))
        obj.home_entity = _ref(ctx, "entity", "code", code, "home_entity_code", "Legal entity") if code else None
    _validate(obj)
    if existing and not _changed(before, obj):
        return obj, Result.UNCHANGED
    save_audited(obj, user=ctx.user, reason=ctx.reason)
    return obj, Result.UPDATED if existing else Result.CREATED


# --- contracts (with their rates and change orders) and projects ------------------------------------

CONTRACT_FIELDS = (
    "code",
    "name",
    "billing_model",
    "currency",
    "cap",
    "expense_markup_pct",
    "discount_pct",
    "po_number",
    "payment_terms_days",
    "billing_frequency",
    "invoice_per_project",
    "retainer_amount",
    "included_hours",
)
CONTRACT_STATUS_MOVES = {
    (Contract.Status.DRAFT, Contract.Status.ACTIVE): "activate",
    (Contract.Status.ACTIVE, Contract.Status.SUSPENDED): "suspend",
    (Contract.Status.SUSPENDED, Contract.Status.ACTIVE): "resume",
}


def _prefetch_client_refs(ctx: _Ctx, records: Sequence[dict], prefix: str = "client") -> None:
    ctx.refs["client:code"] = _index(
        Client.objects.filter(code__in=_values(records, f"{prefix}_code")), lambda r: r.code
    )
    ctx.refs["client:external_id"] = _index(
        Client.objects.filter(source=ctx.source, external_id__in=_values(records, f"{prefix}_external_id")),
        lambda r: r.external_id,
    )


def _people_keys(records: Sequence[dict]) -> set[str]:
    keys = _values(records, "person_external_id") | _values(records, "person_code")
    for record in records:
        for rate in _list(record.get("rates")):
            keys |= {_text(rate.get("person_external_id")), _text(rate.get("person_code"))}
        for co in _list(record.get("change_orders")):
            for rate in _list(co.get("rates") if isinstance(co, dict) else None):
                keys |= {_text(rate.get("person_external_id")), _text(rate.get("person_code"))}
    return keys - {""}


def _list(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _prefetch_people_refs(ctx: _Ctx, keys: set[str], emails: set[str] = frozenset()) -> None:
    rows = list(
        Person.objects.annotate(email_lower=Lower("email")).filter(
            Q(source=ctx.source, external_id__in=keys) | Q(code__in=keys) | Q(email_lower__in=emails)
        )
    )
    ctx.refs["person:external_id"] = _index(
        [r for r in rows if r.source == ctx.source and r.external_id in keys], lambda r: r.external_id
    )
    ctx.refs["person:code"] = _index([r for r in rows if r.code in keys], lambda r: r.code)
    ctx.refs["person:email"] = _index([r for r in rows if r.email_lower in emails], lambda r: r.email_lower)


def _prefetch_contracts(ctx: _Ctx, records: Sequence[dict]) -> None:
    _prefetch_by_external_id(ctx, Contract, records)
    _prefetch_codes(ctx, Contract, records)
    _prefetch_client_refs(ctx, records)
    ctx.refs["entity:code"] = _index(
        LegalEntity.objects.filter(code__in=_values(records, "entity_code")), lambda r: r.code
    )
    ctx.refs["rate_card:code"] = _index(
        RateCard.objects.filter(code__in=_values(records, "rate_card_code")), lambda r: r.code
    )
    role_codes: set[str] = set()
    project_codes: set[str] = set()
    for record in records:
        nested = _list(record.get("rates"))
        for co in _list(record.get("change_orders")):
            nested += _list(co.get("rates"))
            project_codes |= {_text(m.get("project_code")) for m in _list(co.get("milestones"))}
        role_codes |= {_text(r.get("role_code")) for r in nested}
    ctx.refs["role:code"] = _index(Role.objects.filter(code__in=role_codes - {""}), lambda r: r.code)
    ctx.refs["project:code"] = _index(Project.objects.filter(code__in=project_codes - {""}), lambda r: r.code)
    _prefetch_people_refs(ctx, _people_keys(records))
    contract_ids = [c.pk for c in (*ctx.existing.values(), *ctx.by_code.values())]
    own_rates: dict[int, list[ContractRate]] = defaultdict(list)
    for rate in ContractRate.objects.filter(contract_id__in=contract_ids, change_order__isnull=True):
        own_rates[rate.contract_id].append(rate)
    ctx.refs["contract_rates"] = own_rates
    change_orders: dict[int, dict[str, ChangeOrder]] = defaultdict(dict)
    for co in ChangeOrder.objects.filter(contract_id__in=contract_ids).prefetch_related("rates", "milestones"):
        change_orders[co.contract_id][co.code] = co
    ctx.refs["change_orders"] = change_orders


def _resolve_client(record: dict, ctx: _Ctx, prefix: str = "client") -> Client:
    if _text(record.get(f"{prefix}_external_id")):
        value = _text(record[f"{prefix}_external_id"])
        return _ref(ctx, "client", "external_id", value, f"{prefix}_external_id", "Client")
    value = _text(record.get(f"{prefix}_code"))
    if not value:
        raise _error(
            "The client is missing: give client_external_id or client_code.",
            code="required",
            field_errors={f"{prefix}_code": ["Required (or client_external_id)."]},
        )
    return _ref(ctx, "client", "code", value, f"{prefix}_code", "Client")


def _resolve_person(record: dict, ctx: _Ctx, *, required: bool = True) -> Person | None:
    for key in ("person_external_id", "person_code", "person_email"):
        value = _text(record.get(key))
        if value:
            kind = key.removeprefix("person_")
            return _ref(ctx, "person", kind, value.lower() if kind == "email" else value, key, "Person")
    if not required:
        return None
    raise _error(
        "The person is missing: give person_external_id, person_code or person_email.",
        code="required",
        field_errors={"person_external_id": ["Required (or person_code, person_email)."]},
    )


def _rate_key(role_id: int | None, person_id: int | None, effective_from: Any) -> tuple:
    return (role_id, person_id, effective_from)


def _parse_rate(raw: dict, ctx: _Ctx, where: str) -> dict[str, Any]:
    """A rate line of a contract or change order: role_code or a person key, rate, effective dates."""
    role = person = None
    if _text(raw.get("role_code")):
        role = _ref(ctx, "role", "code", _text(raw["role_code"]), f"{where}.role_code", "Role")
    person = _resolve_person(raw, ctx, required=False)
    if (role is None) == (person is None):
        raise _error(
            f"{where}: give either a role_code or a person, not both or neither.",
            field_errors={where: ["Either role_code or a person key."]},
        )
    probe = ContractRate(rate=raw.get("rate"), effective_from=raw.get("effective_from"),
                         effective_to=raw.get("effective_to") or None)
    try:
        probe.clean_fields(exclude=["contract", "role", "person", "change_order"])
    except ValidationError as exc:
        errors = {f"{where}.{k}": v for k, v in exc.message_dict.items()}
        raise _error(f"{where}: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()),
                     field_errors=errors) from exc
    if probe.effective_to and probe.effective_to < probe.effective_from:
        raise _error(f"{where}: effective_to is before effective_from.",
                     field_errors={f"{where}.effective_to": ["Before effective_from."]})
    return {"role": role, "person": person, "rate": probe.rate, "effective_from": probe.effective_from,
            "effective_to": probe.effective_to}


def _terms_locked(contract: Contract, names: list[str]) -> _RecordError:
    """A live contract's terms change only through an approved change order (ADR 0032): the upsert is refused."""
    return _error(
        f"Contract {contract.code} is {contract.get_status_display().lower()}: its terms ({', '.join(names)}) "
        "change only through an approved change order. Send the change as a change order (change_orders: "
        "[{code, cap_delta, new_payment_terms_days, new_po_number, new_billing_frequency, rates, status: "
        "submitted}]); it is approved in Billable.",
        code="contract_terms_locked",
        field_errors={name: ["Changes only through an approved change order."] for name in names},
    )


def _sync_contract_rates(contract: Contract, raw_rates: list[dict], ctx: _Ctx) -> bool:
    """Upsert the contract's own rates by (role or person, effective_from); rates are never deleted.

    A rate that ends is sent with its `effective_to`; history keeps every change. A live
    contract's rates are sent again unchanged or not at all: a new or changed one is refused
    (`contract_terms_locked`) — it comes through an approved change order.
    """
    parsed = [_parse_rate(raw, ctx, f"rates[{i}]") for i, raw in enumerate(raw_rates)]
    current = {_rate_key(r.role_id, r.person_id, r.effective_from): r for r in ctx.refs["contract_rates"].get(
        contract.pk, [])}
    changed = False
    for line in parsed:
        key = _rate_key(getattr(line["role"], "pk", None), getattr(line["person"], "pk", None),
                        line["effective_from"])
        row = current.get(key)
        if row is None:
            row = ContractRate(contract=contract, role=line["role"], person=line["person"],
                               effective_from=line["effective_from"])
        elif row.rate == line["rate"] and row.effective_to == line["effective_to"]:
            continue
        if contract.terms_locked:
            raise _terms_locked(contract, ["rates"])
        row.rate, row.effective_to = line["rate"], line["effective_to"]
        save_audited(row, user=ctx.user, reason=ctx.reason)
        current[key] = row
        changed = True
    return changed


CHANGE_ORDER_FIELDS = ("description", "cap_delta", "signed_on", "new_cap", "new_payment_terms_days", "new_po_number",
                       "new_billing_frequency")


def _sync_change_orders(contract: Contract, raw_orders: list[dict], ctx: _Ctx) -> bool:
    """Create or amend draft change orders (code unique per contract); `status: submitted` hands one over.

    Only a draft can change: a submitted or decided change order is amended by a new one.
    Approval happens in Billable (the project manager, then a controller when the policy says so).
    """
    existing = ctx.refs["change_orders"].get(contract.pk, {}) if contract.pk else {}
    changed = False
    for i, raw in enumerate(raw_orders):
        where = f"change_orders[{i}]"
        code = _text(raw.get("code"))
        if not code:
            raise _error(f"{where}: code is required.", field_errors={f"{where}.code": ["Required."]})
        wanted = _text(raw.get("status")) or ChangeOrder.Status.DRAFT
        if wanted not in (ChangeOrder.Status.DRAFT, ChangeOrder.Status.SUBMITTED):
            raise _error(f"{where}: status {wanted!r}: send draft or submitted; change orders are decided in Billable.",
                         field_errors={f"{where}.status": ["draft or submitted."]})
        co = existing.get(code)
        rates = [_parse_rate(r, ctx, f"{where}.rates[{j}]") for j, r in enumerate(_list(raw.get("rates")))]
        milestones = []
        for j, m in enumerate(_list(raw.get("milestones"))):
            project = _ref(ctx, "project", "code", _text(m.get("project_code")),
                           f"{where}.milestones[{j}].project_code", "Project")
            if project.contract_id != contract.pk:
                raise _error(f"{where}: project {project.code} is not a project of contract {contract.code}.",
                             field_errors={f"{where}.milestones[{j}].project_code": ["Not on this contract."]})
            probe = ChangeOrderMilestone(name=_text(m.get("name")), amount=m.get("amount"),
                                         due_date=m.get("due_date") or None)
            try:
                probe.clean_fields(exclude=["change_order", "project"])
            except ValidationError as exc:
                errors = {f"{where}.milestones[{j}].{k}": v for k, v in exc.message_dict.items()}
                raise _error(f"{where}: invalid milestone.", field_errors=errors) from exc
            milestones.append((project, probe))
        new = co is None
        if new:
            co = ChangeOrder(contract=contract, code=code)
        before = _snapshot(co, CHANGE_ORDER_FIELDS) if not new else {}
        _assign(co, raw, CHANGE_ORDER_FIELDS)
        _validate(co)
        rate_rows = sorted((r["role"] and r["role"].pk, r["person"] and r["person"].pk, r["rate"], r["effective_from"],
                            r["effective_to"]) for r in rates)
        milestone_rows = sorted((p.pk, m.name, m.amount, m.due_date) for p, m in milestones)
        if not new:
            old_rates = sorted(
                (r.role_id, r.person_id, r.rate, r.effective_from, r.effective_to) for r in co.rates.all()
            )
            old_ms = sorted((m.project_id, m.name, m.amount, m.due_date) for m in co.milestones.all())
            same = not _changed(before, co) and old_rates == rate_rows and old_ms == milestone_rows
            if same and (wanted == co.status or wanted == ChangeOrder.Status.DRAFT):
                continue
            if not same and co.status != ChangeOrder.Status.DRAFT:
                raise _error(
                    f"Change order {contract.code}/{code} is {co.get_status_display().lower()}; only drafts change. "
                    "Amend the contract with a new change order.",
                    code="change_order_locked",
                    field_errors={f"{where}.code": ["Not a draft any more."]},
                )
        if new or _changed(before, co) or (not new and (old_rates != rate_rows or old_ms != milestone_rows)):
            save_audited(co, user=ctx.user, reason=ctx.reason)
            if not new:
                co.rates.all().delete()
                co.milestones.all().delete()
            for r in rates:
                ChangeOrderRate.objects.create(change_order=co, role=r["role"], person=r["person"], rate=r["rate"],
                                               effective_from=r["effective_from"], effective_to=r["effective_to"])
            for project, m in milestones:
                m.change_order, m.project = co, project
                m.save()
            changed = True
        if wanted == ChangeOrder.Status.SUBMITTED and co.status == ChangeOrder.Status.DRAFT:
            if contract.status == Contract.Status.CLOSED:
                raise _error(f"Contract {contract.code} is closed and cannot be amended.", code="contract_closed")
            apply_transition(co, "submit", user=ctx.user, reason=ctx.reason, label=f"change order {code}")
            co.submitted_by = ctx.user if getattr(ctx.user, "pk", None) else None
            co.submitted_at = timezone.now()
            save_audited(co, user=ctx.user, reason="Submitted for approval")
            ctx.to_route.append(co)
            changed = True
    return changed


def _move_status(obj: Any, wanted: str, moves: dict[tuple[str, str], str], ctx: _Ctx, label: str,
                 hint: str) -> bool:
    """Apply the one FSM transition from the current status to `wanted`; False when already there."""
    if not wanted or wanted == obj.status:
        return False
    transition = moves.get((obj.status, wanted))
    if transition is None:
        raise _error(
            f"{label} is {obj.get_status_display().lower()}; the sync cannot make it {wanted}. {hint}",
            code="invalid_transition",
            field_errors={"status": [f"Cannot go from {obj.status} to {wanted}."]},
        )
    apply_transition(obj, transition, user=ctx.user, reason=ctx.reason, label=label)
    return True


def _apply_contract(record: dict, existing: Contract | None, ctx: _Ctx, index: int) -> tuple[Any, str]:
    _upper(record, "currency")
    existing = _find_or_adopt(ctx, Contract, record, index)
    obj = existing or Contract(source=ctx.source, external_id=record["external_id"])
    tracked = (*CONTRACT_FIELDS, "client", "entity", "rate_card", "purchase_order", "source", "external_id")
    before = _snapshot(obj, tracked) if existing else {}
    _assign(obj, record, CONTRACT_FIELDS)
    obj.source, obj.external_id = ctx.source, record["external_id"]
    if existing is None or any(k in record for k in ("client_code", "client_external_id")):
        obj.client = _resolve_client(record, ctx)
    if existing is None or "entity_code" in record:
        obj.entity = _ref(ctx, "entity", "code", _text(record.get("entity_code")), "entity_code", "Legal entity")
    if "rate_card_code" in record:
        code = _text(record.get("rate_card_code"))
        obj.rate_card = _ref(ctx, "rate_card", "code", code, "rate_card_code", "Rate card") if code else None
    if "purchase_order_number" in record:  # the client's PO the contract draws on (docs/rules/billing.md §13)
        number = _text(record.get("purchase_order_number"))
        obj.purchase_order = _resolve_purchase_order(obj.client, number) if number else None
        if obj.purchase_order is not None:
            obj.po_number = obj.purchase_order.number
    _validate(obj)
    if obj.billing_model == Contract.BillingModel.RETAINER and (obj.retainer_amount is None
                                                                or obj.included_hours is None):
        raise _error("A retainer contract needs retainer_amount and included_hours.",
                     field_errors={"retainer_amount": ["Required for a retainer."],
                                   "included_hours": ["Required for a retainer."]})
    if obj.rate_card is not None and obj.rate_card.currency != obj.currency:
        raise _error(f"Rate card {obj.rate_card.code} is in {obj.rate_card.currency}, the contract in {obj.currency}.",
                     field_errors={"rate_card_code": ["Currency differs from the contract's."]})
    wanted = _text(record.get("status"))
    if wanted and wanted not in Contract.Status.values:
        raise _error(f"Unknown contract status {wanted!r}.", field_errors={"status": ["Unknown status."]})
    if existing is None and wanted not in ("", Contract.Status.DRAFT, Contract.Status.ACTIVE):
        raise _error("A new contract arrives draft or active.", field_errors={"status": ["draft or active."]})
    changed_names = _changed(before, obj) if existing else []
    locked_terms = [name for name in changed_names if name in CONTRACT_TERMS]
    if existing is not None and existing.terms_locked and locked_terms:
        raise _terms_locked(obj, locked_terms)
    changed = existing is None or bool(changed_names)
    if changed:
        save_audited(obj, user=ctx.user, reason=ctx.reason)
    if "rates" in record:  # before activation: a contract arriving active brings its signed rates along
        changed |= _sync_contract_rates(obj, _list(record["rates"]), ctx)
    moved = _move_status(obj, wanted, CONTRACT_STATUS_MOVES, ctx, f"Contract {obj.code}",
                         "Contracts are closed in Billable.")
    if moved:
        save_audited(obj, user=ctx.user, reason=ctx.reason)
    if "change_orders" in record:
        changed |= _sync_change_orders(obj, _list(record["change_orders"]), ctx)
    if existing is None:
        return obj, Result.CREATED
    return obj, Result.UPDATED if (changed or moved) else Result.UNCHANGED


def _resolve_purchase_order(client: Client, number: str) -> PurchaseOrder:
    po = PurchaseOrder.objects.filter(client=client, number=number).first()
    if po is None:
        raise _error(f"Client {client.code} has no purchase order {number!r}; sync the PO first.",
                     code="not_found", field_errors={"purchase_order_number": ["Unknown PO of this client."]})
    return po


# --- purchase orders (docs/rules/billing.md §13) -------------------------------------------------------

PURCHASE_ORDER_FIELDS = ("number", "currency", "amount", "valid_from", "valid_to", "raised_by", "notes")


def _prefetch_purchase_orders(ctx: _Ctx, records: Sequence[dict]) -> None:
    _prefetch_by_external_id(ctx, PurchaseOrder, records)
    _prefetch_client_refs(ctx, records)


def _apply_purchase_order(record: dict, existing: PurchaseOrder | None, ctx: _Ctx, index: int) -> tuple[Any, str]:
    """Upsert a PO by (source, external id); its amount never drops below what is invoiced on it (ADR 0068)."""
    from billing.services.purchase_orders import purchase_order_check

    _upper(record, "currency")
    obj = existing or PurchaseOrder(source=ctx.source, external_id=record["external_id"])
    before = _snapshot(obj, (*PURCHASE_ORDER_FIELDS, "client", "source", "external_id")) if existing else {}
    _assign(obj, record, PURCHASE_ORDER_FIELDS)
    obj.source, obj.external_id = ctx.source, record["external_id"]
    if existing is None or any(k in record for k in ("client_code", "client_external_id")):
        obj.client = _resolve_client(record, ctx)
    _validate(obj)
    if existing and not _changed(before, obj):
        return obj, Result.UNCHANGED
    purchase_order_check(obj)  # under the PO's row lock; refuses a change below what is invoiced
    save_audited(obj, user=ctx.user, reason=ctx.reason)
    return obj, Result.UPDATED if existing else Result.CREATED


PROJECT_FIELDS = ("code", "name", "business_unit")
PROJECT_STATUS_MOVES = {
    (Project.Status.PLANNED, Project.Status.ACTIVE): "activate",
    (Project.Status.ON_HOLD, Project.Status.ACTIVE): "activate",
    (Project.Status.ACTIVE, Project.Status.ON_HOLD): "hold",
    (Project.Status.ACTIVE, Project.Status.COMPLETED): "complete",
}


def _prefetch_projects(ctx: _Ctx, records: Sequence[dict]) -> None:
    _prefetch_by_external_id(ctx, Project, records, "contract")
    _prefetch_codes(ctx, Project, records, "contract")
    ctx.refs["contract:code"] = _index(
        Contract.objects.filter(code__in=_values(records, "contract_code")), lambda r: r.code
    )
    ctx.refs["contract:external_id"] = _index(
        Contract.objects.filter(source=ctx.source, external_id__in=_values(records, "contract_external_id")),
        lambda r: r.external_id,
    )
    user_model = get_user_model()
    emails = _values(records, "project_manager_email", lower=True)
    usernames = _values(records, "project_manager_username")
    users = list(
        user_model._default_manager.annotate(email_lower=Lower("email")).filter(
            Q(email_lower__in=emails) | Q(username__in=usernames), is_active=True
        )
    )
    ctx.refs["user:email"] = _index([u for u in users if u.email_lower in emails], lambda u: u.email_lower)
    ctx.refs["user:username"] = _index([u for u in users if u.username in usernames], lambda u: u.username)


def _apply_project(record: dict, existing: Project | None, ctx: _Ctx, index: int) -> tuple[Any, str]:
    existing = _find_or_adopt(ctx, Project, record, index)
    obj = existing or Project(source=ctx.source, external_id=record["external_id"])
    tracked = (*PROJECT_FIELDS, "contract", "project_manager", "source", "external_id")
    before = _snapshot(obj, tracked) if existing else {}
    _assign(obj, record, PROJECT_FIELDS)
    obj.source, obj.external_id = ctx.source, record["external_id"]
    if _text(record.get("contract_external_id")):
        obj.contract = _ref(ctx, "contract", "external_id", _text(record["contract_external_id"]),
                            "contract_external_id", "Contract")
    elif _text(record.get("contract_code")) or existing is None:
        obj.contract = _ref(ctx, "contract", "code", _text(record.get("contract_code")), "contract_code", "Contract")
    if existing and obj.contract_id != before["contract"]:
        raise _error(f"Project {obj.code} cannot move to another contract.", code="contract_locked",
                     field_errors={"contract_code": ["A project stays on its contract."]})
    if _text(record.get("project_manager_email")):
        obj.project_manager = _ref(ctx, "user", "email", _text(record["project_manager_email"]).lower(),
                                   "project_manager_email", "User")
    elif _text(record.get("project_manager_username")):
        obj.project_manager = _ref(ctx, "user", "username", _text(record["project_manager_username"]),
                                   "project_manager_username", "User")
    _validate(obj)
    wanted = _text(record.get("status"))
    if wanted and wanted not in Project.Status.values:
        raise _error(f"Unknown project status {wanted!r}.", field_errors={"status": ["Unknown status."]})
    if wanted == Project.Status.ACTIVE and obj.status != wanted and obj.contract.status != Contract.Status.ACTIVE:
        raise _error(f"Contract {obj.contract.code} is {obj.contract.get_status_display().lower()}; "
                     "activate it before its projects.", code="contract_not_active",
                     field_errors={"status": ["The contract is not active."]})
    if existing is None and wanted not in ("", Project.Status.PLANNED, Project.Status.ACTIVE):
        raise _error("A new project arrives planned or active.", field_errors={"status": ["planned or active."]})
    changed = existing is None or bool(_changed(before, obj))
    if changed:
        save_audited(obj, user=ctx.user, reason=ctx.reason)
    if _move_status(obj, wanted, PROJECT_STATUS_MOVES, ctx, f"Project {obj.code}", "Projects are closed in Billable."):
        save_audited(obj, user=ctx.user, reason=ctx.reason)
        changed = True
    if existing is None:
        return obj, Result.CREATED
    return obj, Result.UPDATED if changed else Result.UNCHANGED


# --- work: time entries, expenses, milestones -------------------------------------------------------

TIME_FIELDS = ("date", "hours", "description", "billable")
EXPENSE_FIELDS = ("date", "amount", "currency", "category", "description", "billable")
MILESTONE_FIELDS = ("name", "amount", "due_date", "evidence")
WORK_STATUSES = (WorkStatus.DRAFT, WorkStatus.SUBMITTED)


def _prefetch_project_refs(ctx: _Ctx, records: Sequence[dict]) -> None:
    ctx.refs["project:code"] = _index(
        Project.objects.filter(code__in=_values(records, "project_code")).select_related("contract"),
        lambda r: r.code,
    )
    ctx.refs["project:external_id"] = _index(
        Project.objects.filter(source=ctx.source, external_id__in=_values(records, "project_external_id"))
        .select_related("contract"),
        lambda r: r.external_id,
    )


def _prefetch_work(ctx: _Ctx, model: type[models.Model], records: Sequence[dict], *, lock: bool = True) -> None:
    _prefetch_by_external_id(ctx, model, records, "project__contract", "person", lock=lock)
    _prefetch_project_refs(ctx, records)
    _prefetch_people_refs(
        ctx, _values(records, "person_external_id") | _values(records, "person_code"),
        _values(records, "person_email", lower=True),
    )


def _prefetch_time(ctx: _Ctx, records: Sequence[dict]) -> None:
    """Existing entries, references, and the hours already booked per person and day (under a lock)."""
    _prefetch_work(ctx, TimeEntry, records, lock=False)
    people = {p.pk for key in ("person:external_id", "person:code", "person:email")
              for p in ctx.refs[key].values() if p is not AMBIGUOUS}
    people |= {e.person_id for e in ctx.existing.values()}
    dates: set[datetime.date] = {e.date for e in ctx.existing.values()}
    for record in records:
        with contextlib.suppress(ValueError):
            dates.add(datetime.date.fromisoformat(_text(record.get("date"))))
    # Lock the people's rows (in a fixed order) like time_entry_create does: two imports, or an import and
    # a timesheet save, cannot both pass the 24 h check for the same person.
    list(Person.objects.select_for_update().filter(pk__in=people).order_by("pk").values_list("pk", flat=True))
    # Then the entries themselves (people first, entries second: the order of time_entry_update_draft).
    ctx.existing = {
        row.external_id: row
        for row in TimeEntry.objects.select_for_update(of=("self",))
        .select_related("project__contract", "person")
        .filter(pk__in=[e.pk for e in ctx.existing.values()])
        .order_by("pk")
    }
    for pk, person_id, day, hours in TimeEntry.objects.filter(person_id__in=people, date__in=dates).values_list(
        "pk", "person_id", "date", "hours"
    ):
        ctx.entry_hours[pk] = (person_id, day, hours)
        ctx.day_hours[(person_id, day)] = ctx.day_hours.get((person_id, day), Decimal("0")) + hours


def _resolve_project(record: dict, ctx: _Ctx) -> Project:
    if _text(record.get("project_external_id")):
        return _ref(ctx, "project", "external_id", _text(record["project_external_id"]), "project_external_id",
                    "Project")
    if not _text(record.get("project_code")):
        raise _error("The project is missing: give project_code or project_external_id.", code="required",
                     field_errors={"project_code": ["Required (or project_external_id)."]})
    return _ref(ctx, "project", "code", _text(record["project_code"]), "project_code", "Project")


def _check_bookable(person: Person, project: Project) -> None:
    """New or changed work needs an active person on an active project of an active contract."""
    refusal = booking_refusal(person, project)
    if refusal is not None:
        code, message, party, short = refusal
        field = "person_external_id" if party == "person" else "project_code"
        raise _error(message, code=code, field_errors={field: [short]})


def _wanted_work_status(record: dict) -> str:
    wanted = _text(record.get("status")) or WorkStatus.SUBMITTED
    if wanted not in WORK_STATUSES:
        raise _error(
            f"Status {wanted!r}: send draft or submitted. Imported work is approved in Billable by the project's "
            "manager.", code="invalid_status", field_errors={"status": ["draft or submitted."]},
        )
    return wanted


def _apply_work(record: dict, existing: Any, ctx: _Ctx, model: type, names: tuple[str, ...]) -> tuple[Any, str]:
    """Shared upsert of a time entry or an expense (see the module docstring for the status rules)."""
    kind = "time entry" if model is TimeEntry else "expense"
    if "currency" in record:
        _upper(record, "currency")
    wanted = _wanted_work_status(record)
    obj = existing or model(source=ctx.source, external_id=record["external_id"], status=wanted)
    before = _snapshot(obj, (*names, "person", "project")) if existing else {}
    _assign(obj, record, names)
    if existing is None or any(k in record for k in ("person_external_id", "person_code", "person_email")):
        obj.person = _resolve_person(record, ctx)
    if existing is None or any(k in record for k in ("project_code", "project_external_id")):
        obj.project = _resolve_project(record, ctx)
    _validate(obj)
    changed = _changed(before, obj) if existing else list(before)
    if existing is not None and not changed and not (wanted == WorkStatus.SUBMITTED
                                                     and existing.status == WorkStatus.DRAFT):
        return obj, Result.UNCHANGED
    if existing is not None and (existing.status == WorkStatus.INVOICED or existing.invoice_line_id):
        raise _error(
            f"{kind.capitalize()} {record['external_id']} is already invoiced and cannot be changed; "
            "correct it with a credit note.",
            code="already_invoiced",
            field_errors={name: ["Invoiced: cannot change."] for name in changed} or {"status": ["Invoiced."]},
        )
    if model is TimeEntry and not (ZERO_HOURS < obj.hours <= MAX_HOURS_PER_DAY):
        raise _error(f"Hours must be more than 0 and at most 24 (got {obj.hours}).", code="invalid_hours",
                     field_errors={"hours": ["Must be more than 0 and at most 24."]})
    if model is Expense and obj.amount <= 0:
        raise _error(f"An expense amount must be positive (got {obj.amount}).", code="invalid_amount",
                     field_errors={"amount": ["Must be more than 0."]})
    _check_bookable(obj.person, obj.project)
    if model is TimeEntry:
        _check_day_total(obj, ctx)
    reason = ctx.reason
    if existing is None:
        # Inserted with the batch's other new work in a few queries (`_insert_pending`).
        if wanted == WorkStatus.SUBMITTED:
            obj.submitted_at = timezone.now()
        ctx.pending.append(obj)
        if model is TimeEntry:
            _book_hours(obj, ctx)
        return obj, Result.CREATED
    # An expense awaiting approval whose amount changes is routed again: its request carries the amount.
    reroute = (model is Expense and obj.status == WorkStatus.SUBMITTED
               and bool(set(changed) & {"amount", "currency", "date"}))
    if changed and not reroute and obj.status in WORK_STATUSES and not (wanted == WorkStatus.SUBMITTED
                                                                        and obj.status == WorkStatus.DRAFT):
        # A plain change (no transition): written with the batch's other changes (`_update_pending`).
        obj.updated_at = timezone.now()
        ctx.pending_updates.append(obj)
        ctx.updated_fields.update(changed)
        if model is TimeEntry:
            _book_hours(obj, ctx)
        return obj, Result.UPDATED
    with transaction.atomic():  # the record's savepoint, only around its writes (see `_run`)
        if changed:
            if obj.status == WorkStatus.APPROVED:
                # Changed after approval: the project's manager approves it again.
                apply_transition(obj, "reopen", user=ctx.user,
                                 reason=f"{reason}: changed at the source after approval", label=f"{kind} {obj.pk}")
                obj.approved_by, obj.approved_at = None, None
                ctx.to_route.append(obj)
            elif obj.status == WorkStatus.REJECTED:
                apply_transition(obj, "redraft", user=ctx.user, reason=f"{reason}: corrected at the source",
                                 label=f"{kind} {obj.pk}")
            save_audited(obj, user=ctx.user, reason=reason)
            if reroute:
                from approvals.services import approval_requests_cancel_for

                approval_requests_cancel_for(
                    subject=obj, user=None, reason=f"{reason}: {', '.join(sorted(changed))} changed; routed again"
                )
                ctx.to_route.append(obj)
        if wanted == WorkStatus.SUBMITTED and obj.status == WorkStatus.DRAFT:
            apply_transition(obj, "submit", user=ctx.user, reason=reason, label=f"{kind} {obj.pk}")
            obj.submitted_at = timezone.now()
            obj.rejection_reason = ""
            save_audited(obj, user=ctx.user, reason="Submitted for approval")
            ctx.to_route.append(obj)
    if model is TimeEntry:
        _book_hours(obj, ctx)
    return obj, Result.CREATED if existing is None else Result.UPDATED


def _check_day_total(entry: TimeEntry, ctx: _Ctx) -> None:
    """Nobody books more than 24 h a day: the day's other entries (database and this batch) plus this one."""
    key = (entry.person_id, entry.date)
    booked = ctx.day_hours.get(key, Decimal("0"))
    old = ctx.entry_hours.get(entry.pk) if entry.pk else None
    if old is not None and (old[0], old[1]) == key:
        booked -= old[2]
    if booked + entry.hours > MAX_HOURS_PER_DAY:
        raise _error(
            f"{entry.person} already has {booked} h on {entry.date}; {entry.hours} h more would exceed 24 h for the "
            "day.",
            code="daily_hours_exceeded",
            field_errors={"hours": [f"At most {max(MAX_HOURS_PER_DAY - booked, ZERO_HOURS)} h left on {entry.date}."]},
        )


def _book_hours(entry: TimeEntry, ctx: _Ctx) -> None:
    key = (entry.person_id, entry.date)
    ctx.day_hours[key] = ctx.day_hours.get(key, ZERO_HOURS) + entry.hours
    if entry.pk is None:
        return  # new in this batch: its external id cannot come again in the batch
    old = ctx.entry_hours.get(entry.pk)
    if old is not None:
        ctx.day_hours[(old[0], old[1])] -= old[2]
    ctx.entry_hours[entry.pk] = (entry.person_id, entry.date, entry.hours)


def _apply_time(record: dict, existing: Any, ctx: _Ctx, index: int) -> tuple[Any, str]:
    return _apply_work(record, existing, ctx, TimeEntry, TIME_FIELDS)


def _apply_expense(record: dict, existing: Any, ctx: _Ctx, index: int) -> tuple[Any, str]:
    return _apply_work(record, existing, ctx, Expense, EXPENSE_FIELDS)


def _prefetch_expenses(ctx: _Ctx, records: Sequence[dict]) -> None:
    _prefetch_work(ctx, Expense, records)


def _prefetch_milestones(ctx: _Ctx, records: Sequence[dict]) -> None:
    _prefetch_by_external_id(ctx, Milestone, records, "project__contract")
    _prefetch_project_refs(ctx, records)


def _apply_milestone(record: dict, existing: Milestone | None, ctx: _Ctx, index: int) -> tuple[Any, str]:
    """Planned milestones follow the source; from `completed` on they are under approval or billed."""
    obj = existing or Milestone(source=ctx.source, external_id=record["external_id"])
    before = _snapshot(obj, (*MILESTONE_FIELDS, "project")) if existing else {}
    _assign(obj, record, MILESTONE_FIELDS)
    if existing is None or any(k in record for k in ("project_code", "project_external_id")):
        obj.project = _resolve_project(record, ctx)
    _validate(obj)
    if obj.amount is not None and obj.amount < 0:
        raise _error("A milestone amount cannot be negative.", field_errors={"amount": ["Must be 0 or more."]})
    if existing is not None:
        changed = _changed(before, obj)
        if not changed:
            return obj, Result.UNCHANGED
        if existing.status != Milestone.Status.PLANNED:
            raise _error(
                f"Milestone {record['external_id']} is {existing.get_status_display().lower()} and cannot be "
                "changed by the sync" + ("; correct it with a credit note." if existing.invoice_line_id else "."),
                code="already_invoiced" if existing.invoice_line_id else "milestone_locked",
                field_errors={name: ["Not planned any more: cannot change."] for name in changed},
            )
    if obj.project.status == Project.Status.CLOSED:
        raise _error(f"Project {obj.project.code} is closed.", code="project_closed",
                     field_errors={"project_code": ["Project is closed."]})
    save_audited(obj, user=ctx.user, reason=ctx.reason)
    return obj, Result.UPDATED if existing else Result.CREATED


# --- the engine ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    model: type[models.Model]
    prefetch: Callable[[_Ctx, Sequence[dict]], None]
    apply: Callable[[dict, Any, _Ctx, int], tuple[Any, str]]
    keys: frozenset[str]
    deferred_create: bool = False


def _keys(*names: str) -> frozenset[str]:
    return frozenset({"external_id", "source", *names})


_PERSON_KEYS = ("person_external_id", "person_code", "person_email")
_PROJECT_KEYS = ("project_code", "project_external_id")

SPECS: dict[str, _Spec] = {
    "clients": _Spec(Client, _prefetch_clients, _apply_client, _keys(*CLIENT_FIELDS)),
    "people": _Spec(Person, _prefetch_people, _apply_person, _keys(*PERSON_FIELDS, "role_code", "home_entity_code")),
    "purchase_orders": _Spec(PurchaseOrder, _prefetch_purchase_orders, _apply_purchase_order,
                             _keys(*PURCHASE_ORDER_FIELDS, "client_code", "client_external_id")),
    "contracts": _Spec(
        Contract, _prefetch_contracts, _apply_contract,
        _keys(*CONTRACT_FIELDS, "client_code", "client_external_id", "entity_code", "rate_card_code", "status",
              "rates", "change_orders", "purchase_order_number"),
    ),
    "projects": _Spec(
        Project, _prefetch_projects, _apply_project,
        _keys(*PROJECT_FIELDS, "contract_code", "contract_external_id", "project_manager_email",
              "project_manager_username", "status"),
    ),
    "time_entries": _Spec(TimeEntry, _prefetch_time, _apply_time,
                          _keys(*TIME_FIELDS, *_PERSON_KEYS, *_PROJECT_KEYS, "status"), deferred_create=True),
    "expenses": _Spec(Expense, _prefetch_expenses, _apply_expense,
                      _keys(*EXPENSE_FIELDS, *_PERSON_KEYS, *_PROJECT_KEYS, "status"), deferred_create=True),
    "milestones": _Spec(Milestone, _prefetch_milestones, _apply_milestone, _keys(*MILESTONE_FIELDS, *_PROJECT_KEYS)),
}


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _check_shape(record: Any, spec: _Spec, index: int, seen: dict[str, int], source: str) -> str:
    """The record is an object with a unique, non-empty external id and only known fields."""
    if not isinstance(record, dict):
        raise _error("A record must be an object.", code="invalid")
    external_id = _text(record.get("external_id"))
    if not external_id:
        raise _error("external_id is required.", code="required", field_errors={"external_id": ["Required."]})
    if len(external_id) > 100:
        raise _error("external_id is longer than 100 characters.",
                     field_errors={"external_id": ["At most 100 characters."]})
    if _has_nul(record):
        raise _error("The record contains a NUL character, which no field may hold.", code="invalid",
                     field_errors={"external_id": ["NUL character in the record."]})
    if external_id in seen:
        raise _error(f"external_id {external_id} appears twice in this batch (also record {seen[external_id]}).",
                     code="duplicate_external_id", field_errors={"external_id": ["Duplicate in this batch."]})
    seen[external_id] = index
    if _text(record.get("source")) and _text(record.get("source")) != source:
        raise _error(f"source {record['source']!r} differs from the batch's source {source!r}.",
                     field_errors={"source": [f"Must be {source} (or left out)."]})
    unknown = sorted(set(record) - spec.keys)
    if unknown:
        raise _error(f"Unknown fields: {', '.join(unknown)}.", code="unknown_field",
                     field_errors={name: ["Unknown field."] for name in unknown})
    return external_id


def upsert_records(
    *,
    resource: str,
    records: Sequence[Any],
    user: User,
    source: str,
    partial: bool = False,
    dry_run: bool = False,
    kind: str = ImportBatch.Kind.API_BULK,
    integration_client: IntegrationClient | None = None,
    filename: str = "",
    correlation_id: str = "",
    lines: Sequence[int] | None = None,
    reason: str = "",
    max_records: int | None = MAX_BULK_RECORDS,
    record_batch: bool = True,
) -> UpsertOutcome:
    """Upsert `records` of `resource` by `(source, external_id)` and answer per record.

    All or nothing unless `partial`; nothing is kept on a dry run. The batch is recorded
    as an ImportBatch (also a failed or dry one) unless `record_batch` is False.
    """
    if resource not in SPECS:
        raise ApplicationError(f"Unknown resource {resource!r}.", code="unknown_resource")
    source = _text(source)
    if not source:
        raise ApplicationError("A source is required (e.g. psa, crm).", code="required",
                               field_errors={"source": ["Required."]})
    if len(source) > 30 or "\x00" in source:
        raise ApplicationError("source is longer than 30 characters.", field_errors={"source": ["Too long."]})
    if max_records is not None and len(records) > max_records:
        raise ApplicationError(
            f"{len(records)} records in one call; at most {max_records}.", code="too_many_records",
            field_errors={"records": [f"At most {max_records}."]},
        )
    spec = SPECS[resource]
    batch = None
    if record_batch:
        batch = ImportBatch.objects.create(
            kind=kind, resource=resource, source=source, filename=filename.replace("\x00", "")[:255], dry_run=dry_run,
            all_or_nothing=not partial, rows_total=len(records),
            submitted_by=user if getattr(user, "pk", None) else None,
            integration_client=integration_client, correlation_id=correlation_id[:64],
        )
    ctx = _Ctx(resource=resource, source=source, user=user,
               reason=(reason or f"Inbound sync from {source}")[:100])
    outcome = UpsertOutcome(resource=resource, results=[], saved=False, dry_run=dry_run, partial=partial, batch=batch)
    try:
        with transaction.atomic():
            try:
                _run(spec, records, ctx, outcome, lines)
            except Exception as exc:
                outcome.error = f"Unexpected error: {exc.__class__.__name__}"
                raise
            keep = not dry_run and (partial or not outcome.errors) and not outcome.error
            if keep:
                outcome.saved = any(r.result in (Result.CREATED, Result.UPDATED) for r in outcome.results)
            else:
                transaction.set_rollback(True)
    finally:
        if batch is not None:
            _finish_batch(batch, outcome)
    return outcome


def _run(spec: _Spec, records: Sequence[Any], ctx: _Ctx, outcome: UpsertOutcome, lines: Sequence[int] | None) -> None:
    seen: dict[str, int] = {}
    deferred: list[tuple[RecordResult, Any]] = []
    shaped: list[tuple[int, Any, str | None, _RecordError | None]] = []
    for index, record in enumerate(records):
        try:
            shaped.append((index, record, _check_shape(record, spec, index, seen, ctx.source), None))
        except _RecordError as exc:
            shaped.append((index, record, None, exc))
    good = [dict(r) for _, r, ext, err in shaped if err is None]
    spec.prefetch(ctx, good)
    for index, record, external_id, error in shaped:
        line = lines[index] if lines is not None else None
        ext = external_id or (_text(record.get("external_id")) if isinstance(record, dict) else "")
        if error is not None:
            outcome.results.append(_error_result(index, ext, error, line))
            continue
        record = dict(record)
        record["external_id"] = external_id
        existing = ctx.existing.get(external_id)
        routed = len(ctx.to_route)
        obj = None
        # Work opens its savepoint itself, around its writes only: new work writes nothing here (it is
        # inserted with the batch) and unchanged work nothing at all, so neither costs a savepoint.
        guard = contextlib.nullcontext() if spec.deferred_create else transaction.atomic()
        try:
            with guard:
                obj, result = spec.apply(record, existing, ctx, index)
        except ApplicationError as exc:
            outcome.results.append(_error_result(index, ext, exc, line))
            del ctx.to_route[routed:]
            _forget(ctx, existing)
            continue
        except IntegrityError as exc:
            outcome.results.append(RecordResult(index, ext, Result.ERROR, code="constraint_violated",
                                                message=_constraint_message(exc), line=line,
                                                field_errors={"__all__": [_constraint_message(exc)]}))
            del ctx.to_route[routed:]
            _forget(ctx, existing)
            continue
        outcome.results.append(RecordResult(index, ext, result, id=obj.pk, line=line))
        if obj.pk is None:
            deferred.append((outcome.results[-1], obj))
    _insert_pending(spec, ctx, outcome, deferred)
    _update_pending(spec, ctx, outcome)
    _route_for_approval(ctx, outcome)


def _update_pending(spec: _Spec, ctx: _Ctx, outcome: UpsertOutcome) -> None:
    """Write the batch's plain changes of work at once, each with its history row (user, reason)."""
    if not ctx.pending_updates or outcome.error:
        return
    from simple_history.utils import bulk_update_with_history

    fields = [*sorted(ctx.updated_fields), "updated_at"]  # only what changed: bulk_update costs per field
    try:
        with transaction.atomic():
            bulk_update_with_history(
                ctx.pending_updates, spec.model, fields, batch_size=500,
                default_user=ctx.user if getattr(ctx.user, "pk", None) else None, default_change_reason=ctx.reason,
            )
    except IntegrityError as exc:
        outcome.error = _constraint_message(exc)


def _insert_pending(spec: _Spec, ctx: _Ctx, outcome: UpsertOutcome, deferred: list[tuple[RecordResult, Any]]) -> None:
    """Insert the batch's new work at once: rows and history rows in bulk, the submit transitions logged.

    Each row gets the history row of its creation (acting user, reason) and, when it arrives
    submitted, the django-fsm-log entry of its `submit` transition, as a person's would.
    """
    if not deferred:
        return
    from django.contrib.contenttypes.models import ContentType
    from django_fsm_log.models import StateLog
    from simple_history.utils import bulk_create_with_history

    objs = [obj for _, obj in deferred]
    actor = ctx.user if getattr(ctx.user, "pk", None) else None
    try:
        with transaction.atomic():
            bulk_create_with_history(objs, spec.model, batch_size=500, default_user=actor,
                                     default_change_reason=ctx.reason)
            content_type = ContentType.objects.get_for_model(spec.model)
            submitted = [obj for obj in objs if obj.status == WorkStatus.SUBMITTED]
            StateLog.objects.bulk_create(
                [StateLog(by=actor, source_state=WorkStatus.DRAFT, state=WorkStatus.SUBMITTED, transition="submit",
                          content_type=content_type, object_id=obj.pk, description=ctx.reason) for obj in submitted],
                batch_size=500,
            )
    except IntegrityError as exc:  # e.g. the same external id inserted by a concurrent import
        outcome.error = _constraint_message(exc)
        for result, _ in deferred:
            result.result, result.code, result.message = Result.ERROR, "constraint_violated", outcome.error
        return
    ctx.to_route.extend(submitted)
    for result, obj in deferred:
        result.id = obj.pk


def _forget(ctx: _Ctx, existing: Any) -> None:
    """A failed record's in-memory row may hold values that were rolled back: re-read it if asked again."""
    if existing is not None:
        existing.refresh_from_db()


def _route_for_approval(ctx: _Ctx, outcome: UpsertOutcome) -> None:
    """Open the approval requests of the work handed over in this batch, at once (bounded queries).

    A batch whose work no policy routes fails as a whole: nothing may wait for approval unrouted.
    """
    if not ctx.to_route:
        return
    from approvals.services import approval_requests_open_bulk

    try:
        with transaction.atomic():
            approval_requests_open_bulk(subjects=ctx.to_route, user=ctx.user)
    except ApplicationError as exc:
        outcome.error = f"Approval routing failed: {exc.message}"
        routed_ids = {(type(s), s.pk) for s in ctx.to_route}
        spec_model = SPECS[ctx.resource].model
        for result in outcome.results:
            if (spec_model, result.id) in routed_ids:
                result.result, result.code, result.message = Result.ERROR, exc.code, outcome.error


def _constraint_message(exc: IntegrityError) -> str:
    cause = getattr(exc, "__cause__", None)
    diag = getattr(cause, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return f"The database refused the record (constraint {name})." if name else "The database refused the record."


def _error_result(index: int, external_id: str, exc: ApplicationError, line: int | None) -> RecordResult:
    return RecordResult(index, external_id, Result.ERROR, code=exc.code, message=exc.message,
                        field_errors=dict(exc.field_errors), line=line)


def _finish_batch(batch: ImportBatch, outcome: UpsertOutcome) -> None:
    batch.status = outcome.status
    batch.rows_total = len(outcome.results) or batch.rows_total
    batch.rows_created = outcome.count(Result.CREATED)
    batch.rows_updated = outcome.count(Result.UPDATED)
    batch.rows_unchanged = outcome.count(Result.UNCHANGED)
    batch.rows_failed = outcome.count(Result.ERROR)
    errors = [
        {"index": r.index, "line": r.line, "external_id": r.external_id, "code": r.code, "message": r.message,
         "field_errors": r.field_errors}
        for r in outcome.errors[:500]
    ]
    if outcome.error:
        errors.insert(0, {"index": None, "line": None, "external_id": "", "code": "batch", "message": outcome.error,
                          "field_errors": {}})
    # PostgreSQL's jsonb holds no NUL character: echoes of bad input are made safe.
    batch.errors = json.loads(json.dumps(errors, default=str).replace("\\u0000", "\\ufffd"))
    batch.finished_at = timezone.now()
    batch.save(update_fields=["status", "rows_total", "rows_created", "rows_updated", "rows_unchanged",
                              "rows_failed", "errors", "finished_at"])


def upsert_record(*, resource: str, record: dict[str, Any], user: User, source: str,
                  integration_client: IntegrationClient | None = None, correlation_id: str = "",
                  reason: str = "") -> RecordResult:
    """One record (the PUT/POST endpoints): the bulk engine with one record, not recorded as an import."""
    outcome = upsert_records(resource=resource, records=[record], user=user, source=source,
                             integration_client=integration_client, correlation_id=correlation_id, reason=reason,
                             record_batch=False)
    return outcome.results[0]
