"""Billing scenarios: load a worked example, run the real billing run, compare.

Format: shared/acceptance/README.md. The caller wraps `run_scenario` in a
transaction it rolls back, so nothing a scenario creates survives. Scenario
codes are stored with a `~` prefix so they never collide with the firm's own
records, the run is restricted to the scenario's contracts, and inside the
transaction FX rates are replaced by the scenario's and tax rules by the
built-in defaults, so the result depends on the scenario alone.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import jsonschema
from django.db import IntegrityError, transaction

from billing.models import (
    ChangeOrder,
    ChangeOrderRate,
    Client,
    Contract,
    ContractRate,
    Expense,
    FxRate,
    Invoice,
    InvoiceLine,
    LegalEntity,
    Milestone,
    Person,
    Project,
    PurchaseOrder,
    RateCard,
    RateCardLine,
    Role,
    TaxRule,
    TimeEntry,
)
from billing.models.contracts import contract_terms_unlocked
from billing.services.billing_run import bill_period
from billing.tax_defaults import create_default_tax_rules
from kernel.money import minor_unit, quantum, unsupported_currency_reason

PREFIX = "~"

_DEC = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}
_DEC_OR_NULL = {"anyOf": [_DEC, {"type": "null"}]}
_DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_CODE = {"type": "string", "minLength": 1}
_CUR = {"type": "string", "pattern": r"^[A-Z]{3}$"}
_COUNTRY = {"type": "string", "pattern": r"^[A-Z]{2}$"}
_STR_OR_NULL = {"type": ["string", "null"]}


def _obj(required: list[str], props: dict) -> dict:
    return {"type": "object", "required": required, "properties": props}


_RATE_OVERRIDE = {
    "type": "object",
    "required": ["rate", "from"],
    "properties": {
        "role": _CODE,
        "person": _CODE,
        "rate": _DEC,
        "from": _DATE,
        "to": {"anyOf": [_DATE, {"type": "null"}]},
    },
    "oneOf": [{"required": ["role"]}, {"required": ["person"]}],
}
_WORK_STATUS = {"enum": ["draft", "submitted", "approved", "rejected", "invoiced"]}

SCHEMA = _obj(
    ["run"],
    {
        "run": _obj(
            ["period", "run_date"],
            {
                "period": _obj(["start", "end"], {"start": _DATE, "end": _DATE}),
                "run_date": _DATE,
                # A "bill now" run restricted to these contracts: it ignores their billing frequency (§13).
                "contracts": {"type": "array", "items": _CODE},
            },
        ),
        "entities": {
            "type": "array",
            "items": _obj(
                ["code", "country", "currency"],
                {
                    "code": _CODE,
                    "name": {"type": "string"},
                    "country": _COUNTRY,
                    "currency": _CUR,
                    "vat_id": _STR_OR_NULL,
                },
            ),
        },
        "clients": {
            "type": "array",
            "items": _obj(
                ["code", "country", "currency"],
                {
                    "code": _CODE,
                    "name": {"type": "string"},
                    "country": _COUNTRY,
                    "currency": _CUR,
                    "vat_id": _STR_OR_NULL,
                    "address": {
                        "type": ["object", "null"],
                        "properties": {"line1": _STR_OR_NULL, "city": _STR_OR_NULL, "postal_code": _STR_OR_NULL},
                    },
                    "billing_email": _STR_OR_NULL,
                    "payment_terms_days": {"type": "integer", "minimum": 0},
                    "po_required": {"type": "boolean"},
                    "credit_hold": {"type": "boolean"},
                    "consolidate_invoices": {"type": "boolean"},
                },
            ),
        },
        "roles": {"type": "array", "items": _CODE},
        "people": {
            "type": "array",
            "items": _obj(["code", "role"], {"code": _CODE, "name": {"type": "string"}, "role": _CODE}),
        },
        "rate_cards": {
            "type": "array",
            "items": _obj(
                ["code", "currency"],
                {
                    "code": _CODE,
                    "currency": _CUR,
                    "lines": {
                        "type": "array",
                        "items": _obj(
                            ["role", "rate", "from"],
                            {"role": _CODE, "rate": _DEC, "from": _DATE, "to": {"anyOf": [_DATE, {"type": "null"}]}},
                        ),
                    },
                },
            ),
        },
        "fx_rates": {
            "type": "array",
            "items": _obj(["from", "to", "date", "rate"], {"from": _CUR, "to": _CUR, "date": _DATE, "rate": _DEC}),
        },
        "contracts": {
            "type": "array",
            "items": _obj(
                ["code", "client", "entity", "model", "currency"],
                {
                    "code": _CODE,
                    "client": _CODE,
                    "entity": _CODE,
                    "model": {"enum": ["time_and_materials", "fixed_fee", "retainer"]},
                    "currency": _CUR,
                    "rate_card": _STR_OR_NULL,
                    "cap": _DEC_OR_NULL,
                    "expense_markup_pct": _DEC_OR_NULL,
                    "discount_pct": _DEC_OR_NULL,
                    "po_number": _STR_OR_NULL,
                    "payment_terms_days": {"type": ["integer", "null"], "minimum": 0},
                    "invoice_per_project": {"type": ["boolean", "null"]},
                    "retainer_amount": _DEC_OR_NULL,
                    "included_hours": _DEC_OR_NULL,
                    "rate_overrides": {"type": "array", "items": _RATE_OVERRIDE},
                    "status": {"enum": ["draft", "active", "suspended", "closed"]},
                    "billing_frequency": {"enum": ["monthly", "quarterly", "on_milestone"]},
                    "purchase_order": _STR_OR_NULL,
                },
            ),
        },
        "purchase_orders": {
            "type": "array",
            "items": _obj(
                ["code", "client", "currency", "amount", "valid_from"],
                {
                    "code": _CODE,
                    "client": _CODE,
                    "currency": _CUR,
                    "amount": _DEC,
                    "valid_from": _DATE,
                    "valid_to": {"anyOf": [_DATE, {"type": "null"}]},
                },
            ),
        },
        "change_orders": {
            "type": "array",
            "items": _obj(
                ["contract", "code", "status"],
                {
                    "contract": _CODE,
                    "code": _CODE,
                    "status": {"enum": ["draft", "submitted", "approved", "rejected"]},
                    "cap_delta": _DEC_OR_NULL,
                    "rate_overrides": {"type": "array", "items": _RATE_OVERRIDE},
                },
            ),
        },
        "projects": {
            "type": "array",
            "items": _obj(
                ["code", "contract"],
                {
                    "code": _CODE,
                    "contract": _CODE,
                    "status": {"enum": ["planned", "active", "on_hold", "completed", "closed"]},
                },
            ),
        },
        "time_entries": {
            "type": "array",
            "items": _obj(
                ["person", "project", "date", "hours", "status"],
                {
                    "person": _CODE,
                    "project": _CODE,
                    "date": _DATE,
                    "hours": _DEC,
                    "billable": {"type": "boolean"},
                    "status": _WORK_STATUS,
                },
            ),
        },
        "expenses": {
            "type": "array",
            "items": _obj(
                ["person", "project", "date", "amount", "currency", "status"],
                {
                    "person": _CODE,
                    "project": _CODE,
                    "date": _DATE,
                    "amount": _DEC,
                    "currency": _CUR,
                    "category": {"type": "string"},
                    "billable": {"type": "boolean"},
                    "status": _WORK_STATUS,
                },
            ),
        },
        "milestones": {
            "type": "array",
            "items": _obj(
                ["project", "name", "amount", "status"],
                {
                    "project": _CODE,
                    "name": {"type": "string"},
                    "amount": _DEC,
                    "status": {"enum": ["planned", "completed", "approved", "invoiced"]},
                    "completed_on": {"anyOf": [_DATE, {"type": "null"}]},
                },
            ),
        },
        "prior_invoices": {
            "type": "array",
            "items": _obj(
                ["contract", "kind", "subtotal"],
                {
                    "contract": _CODE,
                    "kind": {"enum": ["invoice", "credit_note"]},
                    "subtotal": _DEC,
                    "purchase_order": _STR_OR_NULL,
                },
            ),
        },
        "expected": {"type": "object"},
    },
)


class ScenarioError(Exception):
    """A malformed scenario: `key` names the offending place, e.g. contracts[2].currency."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate(data: Any) -> None:
    if not isinstance(data, dict):
        raise ScenarioError("(top level)", "a scenario is a JSON object")
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        parts = list(error.absolute_path)
        if error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            raise ScenarioError(_path([*parts, missing[0]]) if missing else _path(parts), "required key is missing")
        raise ScenarioError(_path(parts), error.message)


#: Where a scenario names a currency: (list key, field).
_CURRENCY_KEYS = (
    ("entities", "currency"),
    ("clients", "currency"),
    ("rate_cards", "currency"),
    ("fx_rates", "from"),
    ("fx_rates", "to"),
    ("contracts", "currency"),
    ("expenses", "currency"),
)


def check_currencies(data: dict) -> None:
    """Refuse currencies Billable cannot store without rounding (ISO minor unit other than 0 or 2, §12)."""
    for list_key, field_name in _CURRENCY_KEYS:
        for i, row in enumerate(data.get(list_key) or []):
            reason = unsupported_currency_reason(row.get(field_name) or "")
            if reason:
                raise ScenarioError(f"{list_key}[{i}].{field_name}", reason)


def _date(value: str, key: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ScenarioError(key, f"{value!r} is not a valid date (YYYY-MM-DD)") from None


def _dec(value: Any, key: str, default: Decimal | None = None) -> Decimal | None:
    if value is None:
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ScenarioError(key, f"{value!r} is not a decimal") from None


class _Loader:
    def __init__(self, data: dict):
        self.data = data
        self.entities: dict[str, LegalEntity] = {}
        self.clients: dict[str, Client] = {}
        self.roles: dict[str, Role] = {}
        self.people: dict[str, Person] = {}
        self.rate_cards: dict[str, RateCard] = {}
        self.contracts: dict[str, Contract] = {}
        self.purchase_orders: dict[str, PurchaseOrder] = {}
        self.projects: dict[str, Project] = {}
        self.prior_lines: dict[int, InvoiceLine] = {}
        self.prior_invoices: dict[int, Invoice] = {}
        start = self.data["run"]["period"]["start"]
        self.before_period = _date(start, "run.period.start") - timedelta(days=1)

    def ref(self, table: dict, code: str, key: str, what: str):
        try:
            return table[code]
        except KeyError:
            raise ScenarioError(key, f"unknown {what} {code!r}") from None

    def create(self, key: str, model, **fields):
        try:
            with transaction.atomic():
                return model.objects.create(**fields)
        except IntegrityError as exc:
            raise ScenarioError(key, f"rejected by the database: {exc}".splitlines()[0]) from None

    def load(self) -> None:
        d = self.data
        for i, e in enumerate(d.get("entities", [])):
            key = f"entities[{i}]"
            self.entities[e["code"]] = self.create(
                key,
                LegalEntity,
                code=PREFIX + e["code"],
                name=e.get("name") or e["code"],
                country=e["country"],
                currency=e["currency"],
                vat_id=e.get("vat_id") or "",
            )
        for i, c in enumerate(d.get("clients", [])):
            address = c.get("address") or {}
            self.clients[c["code"]] = self.create(
                f"clients[{i}]",
                Client,
                code=PREFIX + c["code"],
                legal_name=c.get("name") or "",
                country=c["country"],
                currency=c["currency"],
                vat_id=c.get("vat_id") or "",
                # The scenario format has no VAT-registration flag: a client without a VAT id is one that is
                # not registered (a private person or public body), as its cases describe them.
                not_vat_registered=not c.get("vat_id"),
                address_line1=address.get("line1") or "",
                city=address.get("city") or "",
                postal_code=address.get("postal_code") or "",
                billing_emails=c.get("billing_email") or "",
                payment_terms_days=c.get("payment_terms_days", 30),
                po_required=bool(c.get("po_required")),
                credit_hold=bool(c.get("credit_hold")),
                consolidate_invoices=bool(c.get("consolidate_invoices")),
            )
        for i, code in enumerate(d.get("roles", [])):
            self.roles[code] = self.create(f"roles[{i}]", Role, code=PREFIX + code, name=code)
        for i, p in enumerate(d.get("people", [])):
            key = f"people[{i}]"
            self.people[p["code"]] = self.create(
                key,
                Person,
                code=PREFIX + p["code"],
                name=p.get("name") or p["code"],
                role=self.ref(self.roles, p["role"], f"{key}.role", "role"),
            )
        for i, rc in enumerate(d.get("rate_cards", [])):
            key = f"rate_cards[{i}]"
            card = self.create(key, RateCard, code=PREFIX + rc["code"], currency=rc["currency"])
            self.rate_cards[rc["code"]] = card
            for j, line in enumerate(rc.get("lines", [])):
                lkey = f"{key}.lines[{j}]"
                self.create(
                    lkey,
                    RateCardLine,
                    rate_card=card,
                    role=self.ref(self.roles, line["role"], f"{lkey}.role", "role"),
                    rate=_dec(line["rate"], f"{lkey}.rate"),
                    effective_from=_date(line["from"], f"{lkey}.from"),
                    effective_to=_date(line["to"], f"{lkey}.to") if line.get("to") else None,
                )
        for i, fx in enumerate(d.get("fx_rates", [])):
            key = f"fx_rates[{i}]"
            self.create(
                key,
                FxRate,
                from_currency=fx["from"],
                to_currency=fx["to"],
                date=_date(fx["date"], f"{key}.date"),
                rate=_dec(fx["rate"], f"{key}.rate"),
            )
        for i, po in enumerate(d.get("purchase_orders", [])):
            key = f"purchase_orders[{i}]"
            self.purchase_orders[po["code"]] = self.create(
                key,
                PurchaseOrder,
                client=self.ref(self.clients, po["client"], f"{key}.client", "client"),
                number=po["code"],
                currency=po["currency"],
                amount=_dec(po["amount"], f"{key}.amount"),
                valid_from=_date(po["valid_from"], f"{key}.valid_from"),
                valid_to=_date(po["valid_to"], f"{key}.valid_to") if po.get("valid_to") else None,
            )
        for i, c in enumerate(d.get("contracts", [])):
            self._contract(i, c)
        for i, co in enumerate(d.get("change_orders", [])):
            self._change_order(i, co)
        for i, p in enumerate(d.get("projects", [])):
            key = f"projects[{i}]"
            self.projects[p["code"]] = self.create(
                key,
                Project,
                code=PREFIX + p["code"],
                name=p["code"],
                contract=self.ref(self.contracts, p["contract"], f"{key}.contract", "contract"),
                status=p.get("status", "active"),
            )
        for i, t in enumerate(d.get("time_entries", [])):
            key = f"time_entries[{i}]"
            project = self.ref(self.projects, t["project"], f"{key}.project", "project")
            self.create(
                key,
                TimeEntry,
                person=self.ref(self.people, t["person"], f"{key}.person", "person"),
                project=project,
                date=_date(t["date"], f"{key}.date"),
                hours=_dec(t["hours"], f"{key}.hours"),
                billable=t.get("billable", True),
                status=t["status"],
                invoice_line=self._prior_line(project.contract) if t["status"] == "invoiced" else None,
            )
        for i, e in enumerate(d.get("expenses", [])):
            key = f"expenses[{i}]"
            project = self.ref(self.projects, e["project"], f"{key}.project", "project")
            self.create(
                key,
                Expense,
                person=self.ref(self.people, e["person"], f"{key}.person", "person"),
                project=project,
                date=_date(e["date"], f"{key}.date"),
                amount=_dec(e["amount"], f"{key}.amount"),
                currency=e["currency"],
                category=e.get("category") or "other",
                billable=e.get("billable", True),
                status=e["status"],
                invoice_line=self._prior_line(project.contract) if e["status"] == "invoiced" else None,
            )
        for i, m in enumerate(d.get("milestones", [])):
            key = f"milestones[{i}]"
            project = self.ref(self.projects, m["project"], f"{key}.project", "project")
            self.create(
                key,
                Milestone,
                project=project,
                name=m["name"],
                amount=_dec(m["amount"], f"{key}.amount"),
                status=m["status"],
                completed_at=(
                    _noon_utc(_date(m["completed_on"], f"{key}.completed_on")) if m.get("completed_on") else None
                ),
                invoice_line=self._prior_line(project.contract) if m["status"] == "invoiced" else None,
            )
        for i, pi in enumerate(d.get("prior_invoices", [])):
            key = f"prior_invoices[{i}]"
            contract = self.ref(self.contracts, pi["contract"], f"{key}.contract", "contract")
            subtotal = abs(_dec(pi["subtotal"], f"{key}.subtotal"))
            credit_of = self._prior_invoice(contract) if pi["kind"] == "credit_note" else None
            po = (
                self.ref(self.purchase_orders, pi["purchase_order"], f"{key}.purchase_order", "purchase order")
                if pi.get("purchase_order")
                else None
            )
            self._posted_invoice(key, contract, pi["kind"], subtotal, credit_of, purchase_order=po)

    def _contract(self, i: int, c: dict) -> None:
        key = f"contracts[{i}]"
        contract = self.create(
            key,
            Contract,
            code=PREFIX + c["code"],
            client=self.ref(self.clients, c["client"], f"{key}.client", "client"),
            entity=self.ref(self.entities, c["entity"], f"{key}.entity", "entity"),
            billing_model=c["model"],
            currency=c["currency"],
            rate_card=self.ref(self.rate_cards, c["rate_card"], f"{key}.rate_card", "rate card")
            if c.get("rate_card")
            else None,
            cap=_dec(c.get("cap"), f"{key}.cap"),
            expense_markup_pct=_dec(c.get("expense_markup_pct"), f"{key}.expense_markup_pct", Decimal(0)),
            discount_pct=_dec(c.get("discount_pct"), f"{key}.discount_pct", Decimal(0)),
            po_number=c.get("po_number") or "",
            purchase_order=self.ref(
                self.purchase_orders, c["purchase_order"], f"{key}.purchase_order", "purchase order"
            )
            if c.get("purchase_order")
            else None,
            payment_terms_days=c.get("payment_terms_days"),
            invoice_per_project=bool(c.get("invoice_per_project")),
            retainer_amount=_dec(c.get("retainer_amount"), f"{key}.retainer_amount"),
            included_hours=_dec(c.get("included_hours"), f"{key}.included_hours"),
            status=c.get("status", "active"),
            billing_frequency=self._frequency(key, c),
        )
        self.contracts[c["code"]] = contract
        for j, ro in enumerate(c.get("rate_overrides", [])):
            self._rate(f"{key}.rate_overrides[{j}]", ContractRate, ro, contract=contract)

    def _frequency(self, key: str, c: dict) -> str:
        frequency = c.get("billing_frequency") or Contract.Frequency.MONTHLY
        if frequency == Contract.Frequency.ON_MILESTONE and c["model"] != Contract.BillingModel.FIXED_FEE:
            raise ScenarioError(f"{key}.billing_frequency", "on_milestone is for fixed-fee contracts only")
        return frequency

    def _rate(self, key: str, model, ro: dict, **fields) -> Any:
        return self.create(
            key,
            model,
            role=self.ref(self.roles, ro["role"], f"{key}.role", "role") if ro.get("role") else None,
            person=self.ref(self.people, ro["person"], f"{key}.person", "person") if ro.get("person") else None,
            rate=_dec(ro["rate"], f"{key}.rate"),
            effective_from=_date(ro["from"], f"{key}.from"),
            effective_to=_date(ro["to"], f"{key}.to") if ro.get("to") else None,
            **fields,
        )

    def _change_order(self, i: int, co: dict) -> None:
        key = f"change_orders[{i}]"
        contract = self.ref(self.contracts, co["contract"], f"{key}.contract", "contract")
        change_order = self.create(
            key,
            ChangeOrder,
            contract=contract,
            code=co["code"],
            status=co["status"],
            cap_delta=_dec(co.get("cap_delta"), f"{key}.cap_delta", Decimal(0)),
        )
        for j, ro in enumerate(co.get("rate_overrides", [])):
            rkey = f"{key}.rate_overrides[{j}]"
            self._rate(rkey, ChangeOrderRate, ro, change_order=change_order)
            if change_order.status == ChangeOrder.Status.APPROVED:
                # What approving the change order does (billing.services.change_orders).
                self._rate(rkey, ContractRate, ro, contract=contract, change_order=change_order)

    def _posted_invoice(
        self, key: str, contract: Contract, kind: str, subtotal: Decimal, credit_of=None, purchase_order=None
    ) -> Invoice:
        return self.create(
            key,
            Invoice,
            purchase_order=purchase_order,
            kind=kind,
            credit_of=credit_of,
            entity=contract.entity,
            client=contract.client,
            contract=contract,
            issue_date=self.before_period,
            due_date=self.before_period,
            currency=contract.currency,
            subtotal=subtotal,
            total=subtotal,
            status=Invoice.Status.POSTED,
            notes="Billed before this scenario.",
        )

    def _prior_invoice(self, contract: Contract) -> Invoice:
        """An earlier invoice of the contract: what prior credit notes and billed items refer to."""
        if contract.id not in self.prior_invoices:
            self.prior_invoices[contract.id] = self._posted_invoice("prior_invoices", contract, "invoice", Decimal(0))
        return self.prior_invoices[contract.id]

    def _prior_line(self, contract: Contract) -> InvoiceLine:
        if contract.id not in self.prior_lines:
            self.prior_lines[contract.id] = InvoiceLine.objects.create(
                invoice=self._prior_invoice(contract),
                kind=InvoiceLine.Kind.TIME,
                quantity=Decimal(0),
                unit_price=Decimal(0),
                amount=Decimal(0),
                description="Items billed before this scenario",
            )
        return self.prior_lines[contract.id]


def _noon_utc(day: date) -> datetime:
    """A completion date as a timestamp: midday UTC, the same calendar date in every European zone."""
    return datetime.combine(day, time(12), tzinfo=UTC)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _strip(code: str | None) -> str | None:
    if code is None:
        return None
    return code[len(PREFIX) :] if code.startswith(PREFIX) else code


def _fmt_money(amount: Decimal, currency: str) -> str:
    return str(amount.quantize(quantum(currency)))


def _fmt_price(price: Decimal, currency: str) -> str:
    digits = max(minor_unit(currency), -price.normalize().as_tuple().exponent)
    return str(price.quantize(Decimal(1).scaleb(-digits)))


def invoice_result(invoice: Invoice) -> dict:
    currency = invoice.currency
    exceptions = list(invoice.exceptions.all())
    consolidated = invoice.consolidated
    result = {
        # A consolidated invoice names its client; each of its lines names its contract (§13).
        "contract": None if consolidated else _strip(invoice.contract.code),
        **({"client": _strip(invoice.client.code)} if consolidated else {}),
        "project": _strip(invoice.project.code) if invoice.project else None,
        "status": invoice.status,
        "currency": currency,
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "service_start": _iso(invoice.service_start),
        "service_end": _iso(invoice.service_end),
        "lines": [
            {
                **({"contract": _strip(line.contract.code) if line.contract else None} if consolidated else {}),
                "kind": line.kind,
                "project": _strip(line.project.code) if line.project else None,
                "role": _strip(line.role.code) if line.role else None,
                "quantity": str(line.quantity.quantize(Decimal("0.01"))),
                "unit_price": _fmt_price(line.unit_price, currency),
                "amount": _fmt_money(line.amount, currency),
                "service_start": _iso(line.service_start),
                "service_end": _iso(line.service_end),
            }
            for line in invoice.lines.all()
        ],
        "taxes": [
            {
                "category": tax.category,
                "rate": str(tax.rate.quantize(Decimal("0.01"))),
                "base": _fmt_money(tax.base, currency),
                "amount": _fmt_money(tax.amount, currency),
            }
            for tax in invoice.taxes.all()
        ],
        "subtotal": _fmt_money(invoice.subtotal, currency),
        "tax_total": _fmt_money(invoice.tax_total, currency),
        "total": _fmt_money(invoice.total, currency),
        "exceptions": sorted(e.code for e in exceptions if e.severity == "blocking"),
        "warnings": sorted(e.code for e in exceptions if e.severity == "warning"),
    }
    if invoice.purchase_order_id:
        result["purchase_order"] = _strip(invoice.purchase_order.number)
    return result


def run_scenario(data: dict) -> dict:
    """Load the scenario, bill its period, and return the result; the caller rolls back."""
    validate(data)
    check_currencies(data)
    FxRate.objects.all().delete()
    TaxRule.objects.all().delete()
    create_default_tax_rules(TaxRule)
    loader = _Loader(data)
    with contract_terms_unlocked("scenario data: contracts as signed"):
        loader.load()
    run = data["run"]
    period_start = _date(run["period"]["start"], "run.period.start")
    period_end = _date(run["period"]["end"], "run.period.end")
    if period_end < period_start:
        raise ScenarioError("run.period.end", "the period ends before it starts")
    run_date = _date(run["run_date"], "run.run_date")
    bill_now = "contracts" in run
    named = run.get("contracts") or []
    scope = (
        [loader.ref(loader.contracts, code, f"run.contracts[{i}]", "contract").id for i, code in enumerate(named)]
        if bill_now
        else [c.id for c in loader.contracts.values()]
    )
    billing_run = bill_period(
        period_start=period_start,
        period_end=period_end,
        run_date=run_date,
        user=None,
        contracts=scope,
        bill_now=bill_now,
    )
    invoices = (
        Invoice.objects.filter(billing_run=billing_run)
        .select_related("contract", "project", "client", "purchase_order")
        .prefetch_related("lines__project", "lines__role", "lines__contract", "taxes", "exceptions")
        .order_by("contract__code", "project__code")
    )
    return {
        "invoices": [invoice_result(invoice) for invoice in invoices],
        # Contracts with work waiting that this run did not bill, and why (billing frequency, §13).
        "not_due": [
            {"contract": _strip(n["contract"]), "next_due": n["next_due"], "reason": n["reason"]}
            for n in billing_run.summary.get("not_due", [])
        ],
    }


# --- comparison ---------------------------------------------------------------


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Decimal(value).normalize() if value.strip().lstrip("-").replace(".", "", 1).isdigit() else value
        except InvalidOperation:
            return value
    return value


def _row(row: dict, keys: list[str]) -> tuple:
    return tuple((k, _norm(row.get(k))) for k in keys)


def _match_key(invoice: dict) -> tuple:
    """(contract, project); a consolidated invoice (contract null) by (client, project) (§13)."""
    if invoice.get("contract") is None and invoice.get("client"):
        return (f"client {invoice['client']}", invoice.get("project"))
    return (invoice.get("contract"), invoice.get("project"))


def compare(expected: dict, actual: dict) -> list[str]:
    """Differences between expected and actual results, as readable lines (empty = equal)."""
    diffs: list[str] = []
    exp = {_match_key(i): i for i in expected.get("invoices", [])}
    act = {_match_key(i): i for i in actual.get("invoices", [])}
    for key in sorted(set(exp) - set(act), key=str):
        diffs.append(f"missing invoice {key[0]} / project {key[1]}")
    for key in sorted(set(act) - set(exp), key=str):
        diffs.append(f"unexpected invoice {key[0]} / project {key[1]}: {json.dumps(act[key])}")
    for key in sorted(set(exp) & set(act), key=str):
        e, a = exp[key], act[key]
        where = f"invoice {key[0]} / project {key[1]}"
        for field_name, value in e.items():
            if field_name in ("contract", "project", "client"):
                continue
            if field_name in ("lines", "taxes"):
                keys = sorted({k for row in value for k in row})
                shown = {_row(r, keys): {k: r.get(k) for k in keys} for r in [*value, *a.get(field_name, [])]}
                want = Counter(_row(r, keys) for r in value)
                got = Counter(_row(r, keys) for r in a.get(field_name, []))
                for row in want - got:
                    diffs.append(f"{where}: {field_name} missing {json.dumps(shown[row])}")
                for row in got - want:
                    diffs.append(f"{where}: {field_name} unexpected {json.dumps(shown[row])}")
            elif field_name in ("exceptions", "warnings"):
                if set(value) != set(a.get(field_name, [])):
                    diffs.append(f"{where}: {field_name} expected {sorted(value)}, got {sorted(a.get(field_name, []))}")
            elif _norm(value) != _norm(a.get(field_name)):
                diffs.append(f"{where}: {field_name} expected {value!r}, got {a.get(field_name)!r}")
    return diffs
