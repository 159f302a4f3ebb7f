"""The Tryton adapter: Billable's canonical documents posted to a Tryton 8 ERP over its JSON-RPC API.

Mapping (docs/manual/erp-mapping.md):

- customer → `party.party` found by its code (= Billable's client code): name, one invoice address,
  the VAT id as a tax identifier (typed `eu_vat`/`gb_vat` when Billable found it valid), billing
  e-mails as contact mechanisms;
- invoice / credit note → a customer invoice (`account.invoice`, type `out`) in the ERP company of
  the issuing entity (`ErpEntityMapping`), Billable's legal number as `reference`, lines on the
  revenue account with the ERP tax of each Billable tax (`ErpTaxMapping`), then posted (Tryton gives
  its own number). A credit note is an invoice with negative quantities: Tryton numbers it in the
  credit-note sequence. The ERP id stored in Billable is Tryton's invoice id;
- payments ← the payment lines Tryton reconciled against those invoices (`invoice_payments`);
- journal (the revenue close, kind `post_journal`) → a posted `account.move` in the entity's company, in
  the mapping's close journal (default MISC), the Tryton period holding the journal's date, Billable's
  reference as the move's `description` and one move line per journal line on the account with the
  same code in Tryton's chart. Re-deliveries find the move by that description (a draft left behind
  is posted), never create a second one.

Exactly once: `reference` is not unique in Tryton, so every post first looks the invoice up by
Billable's number in the company: a posted one is answered as it is, a draft left by an attempt that
died between create and post is posted, nothing is created twice. The totals Tryton computes are
compared with Billable's before posting; a difference rejects the document (dead letter), never
posts a different amount.

Errors: Tryton's `UserError` (closed period, missing sequence, invalid identifier...) is a permanent
rejection carrying Tryton's message; its `UserWarning`s (due date in the past, invoice date after
Tryton's today, taxes other than a product's) are acknowledged — Billable's approved document is
the authority — and the call repeated; a session that timed out (HTTP 401) logs in again; a
connection refused is retryable; a request that left without an answer is unclear (the outbox looks
it up before the next send).
"""

from __future__ import annotations

import base64
import datetime
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings

from integrations.erp.base import ErpAdapter, ErpError, ErpPayment, ErpResult, Outcome

logger = logging.getLogger(__name__)

MAX_WARNINGS = 8
CENT = Decimal("0.01")
#: How long a resolved mapping is trusted before it is read (and checked against Tryton) again.
MAPPING_TTL_S = 60.0

# The demo's entities → the companies and taxes ops/tryton/init_template.py creates in Tryton
# (`manage.py erp_check --demo-mappings` enters them; tests use them too).
DEMO_COMPANIES = {"NWB": "Nordwind Beratung GmbH", "TLL": "Thames Ledger Ltd", "HUD": "Hudson Advisory Inc"}
DEMO_TAXES = {
    "NWB": [("S", "19.00", "VAT 19% (S)"), ("AE", "0.00", "VAT 0% reverse charge (AE)"),
            ("O", "0.00", "VAT 0% out of scope (O)")],
    "TLL": [("S", "20.00", "VAT 20% (S)"), ("O", "0.00", "VAT 0% out of scope (O)")],
    "HUD": [("O", "0.00", "No VAT (O)")],
}
# The revenue close's accounts (revenue.EntityAccounts) as codes of the universal chart the template uses:
# services recognised over time, revenue adjustments (invoiced revenue clearing), accrued income (WIP),
# deferred income, foreign currency gain/loss. The demo enters them when it runs against Tryton.
DEMO_REVENUE_ACCOUNTS = {"revenue": "4.2.2", "billed": "4.3.3", "wip": "1.4.2", "deferred": "2.2.2",
                         "fx_revaluation": "6.2.1"}


# =====================================================================================================
# JSON-RPC
# =====================================================================================================


def _encode(value: Any) -> Any:
    """Tryton's JSON extensions: Decimal, date and datetime as tagged objects."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {"__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
                "hour": value.hour, "minute": value.minute, "second": value.second,
                "microsecond": value.microsecond}
    if isinstance(value, datetime.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(value["decimal"])
        if kind == "date":
            return datetime.date(value["year"], value["month"], value["day"])
        if kind == "datetime":
            return datetime.datetime(value["year"], value["month"], value["day"], value.get("hour", 0),  # Tryton: UTC
                                     value.get("minute", 0), value.get("second", 0), value.get("microsecond", 0),
                                     tzinfo=datetime.UTC)
        if kind == "bytes":
            return base64.b64decode(value["base64"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class TrytonUserWarning(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name
        self.message = message


class TrytonClient:
    """One JSON-RPC session to one Tryton database; thread-safe (a django-q2 worker shares it)."""

    def __init__(self, *, url: str, database: str, user: str, password: str, timeout: float):
        self.url = f"{url.rstrip('/')}/{database}/rpc/"
        self.database = database
        self.user = user
        self.password = password
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                                 headers={"User-Agent": "Billable-ERP-outbox/1"})
        self._lock = threading.Lock()
        self._auth: str | None = None
        self.user_id: int | None = None
        self.logins = 0
        self._id = 0

    def close(self) -> None:
        self.http.close()

    def _post(self, method: str, params: list, *, auth: str | None, write: bool) -> httpx.Response:
        with self._lock:
            self._id += 1
            body = {"id": self._id, "method": method, "params": _encode(params)}
        headers = {"Authorization": auth} if auth else {}
        try:
            return self.http.post(self.url, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ErpError(f"Tryton not reachable: {exc!r}", outcome=Outcome.RETRYABLE) from exc
        except httpx.TransportError as exc:  # sent, no complete answer: it may have been committed
            raise ErpError(f"No answer from Tryton to {method}: {exc!r}",
                           outcome=Outcome.UNCLEAR if write else Outcome.RETRYABLE) from exc

    def login(self) -> None:
        response = self._post("common.db.login", [self.user, {"password": self.password}, "en"],
                              auth=None, write=False)
        if response.status_code in (401, 403):
            raise ErpError(f"Tryton refused the login of {self.user!r} (HTTP {response.status_code})",
                           outcome=Outcome.PERMANENT, status_code=response.status_code)
        result = self._result(response, "common.db.login")
        user_id, session = result[0], result[1]
        token = base64.b64encode(f"{self.user}:{user_id}:{session}".encode()).decode()
        self._auth = f"Session {token}"
        self.user_id = int(user_id)
        self.logins += 1

    def call(self, method: str, *params: Any, context: dict | None = None, write: bool = False) -> Any:
        """`model.<name>.<method>` (or a wizard) with its arguments; the context goes last, as Tryton wants."""
        for attempt in (1, 2):
            if self._auth is None:
                self.login()
            response = self._post(method, [*params, context or {}], auth=self._auth, write=write)
            if response.status_code == 401 and attempt == 1:  # the session timed out: log in again, once
                logger.info("tryton: session expired, logging in again")
                self._auth = None
                continue
            return self._result(response, method)
        raise AssertionError("unreachable")

    @staticmethod
    def _result(response: httpx.Response, method: str) -> Any:
        code = response.status_code
        if code == 429 or code >= 500:
            raise ErpError(f"Tryton answered HTTP {code} to {method}", outcome=Outcome.RETRYABLE, status_code=code)
        if code != 200:
            raise ErpError(f"Tryton answered HTTP {code} to {method}: {response.text[:300]}",
                           outcome=Outcome.PERMANENT, status_code=code)
        body = response.json()
        error = body.get("error")
        if error is None:
            return _decode(body.get("result"))
        kind = error[0] if isinstance(error, list) and error else str(error)
        args = error[1] if isinstance(error, list) and len(error) > 1 else []
        if kind == "UserWarning":
            name, message = args[0], args[1]
            raise TrytonUserWarning(name, message)
        if kind == "UserError":
            message = args[0] if args else str(error)
            description = args[1] if len(args) > 1 and args[1] else ""
            text = f"{message} {description}".strip()
            # (JSON-RPC errors come with HTTP 200; recorded as 422/409 so the monitor reads them as refusals)
            raise ErpError(f"Tryton rejected it: {text}", outcome=Outcome.PERMANENT, status_code=422)
        if kind == "ConcurrencyException":
            raise ErpError(f"Tryton: concurrent change ({args})", outcome=Outcome.RETRYABLE, status_code=409)
        # Any other server exception: its transaction was rolled back, nothing was stored.
        raise ErpError(f"Tryton failed on {method}: {str(kind)[:300]}", outcome=Outcome.RETRYABLE, status_code=500)


# =====================================================================================================
# The adapter
# =====================================================================================================


@dataclass
class _Company:
    id: int
    currency: str
    receivable: int | None
    revenue: int
    journal: int
    taxes: dict[tuple[str, Decimal], int] = field(default_factory=dict)
    resolved_at: float = 0.0
    close_journal_code: str = ""
    close_journal: int | None = None
    accounts: dict[str, int] = field(default_factory=dict)


class MappingError(ErpError):
    def __init__(self, message: str):
        super().__init__(message, outcome=Outcome.PERMANENT)


class TrytonErpAdapter(ErpAdapter):
    endpoint = "erp"

    def __init__(self, *, url: str | None = None, database: str | None = None, user: str | None = None,
                 password: str | None = None, timeout: float | None = None):
        self.client = TrytonClient(
            url=url or settings.ERP_BASE_URL,
            database=database or settings.TRYTON_DATABASE,
            user=user or settings.TRYTON_USER,
            password=password if password is not None else settings.TRYTON_PASSWORD,
            timeout=float(timeout if timeout is not None else settings.ERP_TIMEOUT_S),
        )
        self._companies: dict[str, _Company] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    # --- helpers ------------------------------------------------------------------------------------
    def _call(self, method: str, *params: Any, company: int | None = None, write: bool = False) -> Any:
        context = {"company": company, "companies": [company]} if company else {}
        return self.client.call(method, *params, context=context, write=write)

    def _search(self, model: str, domain: list, *, company: int | None = None, limit: int | None = None,
                order: list | None = None) -> list[int]:
        return self._call(f"model.{model}.search", domain, 0, limit, order, company=company)

    def _read(self, model: str, ids: list[int], fields: list[str], *, company: int | None = None) -> list[dict]:
        return self._call(f"model.{model}.read", ids, fields, company=company) if ids else []

    def _acknowledged(self, method: str, *params: Any, company: int | None) -> Any:
        """A state-changing call whose Tryton warnings are acknowledged (then the call is repeated)."""
        for _ in range(MAX_WARNINGS):
            try:
                return self._call(method, *params, company=company, write=True)
            except TrytonUserWarning as warning:
                logger.info("tryton: acknowledging warning %s: %s", warning.name, warning.message)
                if self.client.user_id is None:
                    self.client.login()
                self._call("model.res.user.warning.create",
                           [{"user": self.client.user_id, "name": warning.name, "always": False}], write=True)
        raise ErpError(f"Tryton kept warning on {method}", outcome=Outcome.PERMANENT)

    # --- mappings -----------------------------------------------------------------------------------
    def company(self, entity_code: str) -> _Company:
        """The ERP company of an entity, its accounts and taxes; resolved once per adapter, checked against Tryton."""
        with self._lock:
            cached = self._companies.get(entity_code)
            if cached is not None and time.monotonic() - cached.resolved_at < MAPPING_TTL_S:
                return cached
        from integrations.models import ErpEntityMapping, ErpTaxMapping

        mapping = ErpEntityMapping.objects.filter(entity__code=entity_code).first()
        if mapping is None:
            raise MappingError(f"No ERP company is mapped for entity {entity_code} (admin: ERP company mappings).")
        found = self._search("company.company", [("party.name", "=", mapping.erp_company)], limit=2)
        if len(found) != 1:
            raise MappingError(f"Entity {entity_code}: Tryton has {len(found)} companies named "
                               f"{mapping.erp_company!r}.")
        cid = found[0]
        (row,) = self._read("company.company", [cid], ["currency.code"], company=cid)
        currency = row["currency."]["code"] if isinstance(row.get("currency."), dict) else ""
        revenue = self._account(cid, mapping.revenue_account, "type.revenue", entity_code)
        receivable = (self._account(cid, mapping.receivable_account, "type.receivable", entity_code)
                      if mapping.receivable_account else None)
        journal_domain = [("code", "=", mapping.journal)] if mapping.journal else [("type", "=", "revenue")]
        journals = self._search("account.journal", journal_domain, company=cid, limit=1)
        if not journals:
            raise MappingError(f"Entity {entity_code}: no Tryton journal {mapping.journal or 'of type revenue'}.")
        company = _Company(id=cid, currency=currency, receivable=receivable, revenue=revenue, journal=journals[0],
                           resolved_at=time.monotonic(), close_journal_code=mapping.close_journal)
        for tax in ErpTaxMapping.objects.filter(entity__code=entity_code):
            ids = self._search("account.tax", [("name", "=", tax.erp_tax), ("company", "=", cid),
                                               ("parent", "=", None)], company=cid, limit=2)
            if len(ids) != 1:
                raise MappingError(f"Entity {entity_code}: tax {tax.category} {tax.rate}% maps to "
                                   f"{tax.erp_tax!r}, which Tryton's company has {len(ids)} of.")
            company.taxes[(tax.category, tax.rate.quantize(CENT))] = ids[0]
        with self._lock:
            self._companies[entity_code] = company
        return company

    def _account(self, company: int, code: str, kind: str, entity_code: str) -> int:
        domain = [("company", "=", company), ("closed", "!=", True)]
        domain.append(("code", "=", code) if code else (kind, "=", True))
        ids = self._search("account.account", domain, company=company, limit=1, order=[("code", "ASC")])
        if not ids:
            raise MappingError(f"Entity {entity_code}: Tryton has no account {code or kind}.")
        return ids[0]

    def check_mappings(self, entity_codes: list[str]) -> list[str]:
        """Problems with the mappings of these entities (empty: every one resolves in Tryton)."""
        problems = []
        for code in entity_codes:
            with self._lock:
                self._companies.pop(code, None)
            try:
                self.company(code)
            except ErpError as error:
                problems.append(error.message)
        return problems

    # --- customers ----------------------------------------------------------------------------------
    def _party_values(self, customer: dict[str, Any]) -> dict[str, Any]:
        return {"name": customer["name"][:300]}

    def _address_values(self, customer: dict[str, Any]) -> dict[str, Any]:
        address = customer.get("address") or {}
        street = "\n".join(x for x in (address.get("line1"), address.get("line2")) if x)
        values: dict[str, Any] = {"street": street, "postal_code": address.get("postal_code") or "",
                                  "city": address.get("city") or "", "invoice": True}
        if customer.get("country"):
            found = self._search("country.country", [("code", "=", customer["country"])], limit=1)
            values["country"] = found[0] if found else None
        return values

    @staticmethod
    def _identifier(customer: dict[str, Any]) -> dict[str, Any] | None:
        vat_id = (customer.get("vat_id") or "").replace(" ", "")
        if not vat_id:
            return None
        kind = None
        if customer.get("vat_id_valid"):
            kind = {"GB": "gb_vat", "CH": "ch_vat", "NO": "no_vat", "US": None}.get(customer.get("country"), "eu_vat")
        return {"type": kind, "code": vat_id}

    def _upsert_party(self, customer: dict[str, Any]) -> tuple[int, int]:
        """(party id, invoice address id), the party created or brought up to date."""
        code = customer["code"]
        found = self._search("party.party", [("code", "=", code)], limit=1)
        address = self._address_values(customer)
        identifier = self._identifier(customer)
        emails = [e for e in customer.get("billing_emails") or [] if e]
        if not found:
            values = {**self._party_values(customer), "code": code,
                      "addresses": [["create", [address]]],
                      "contact_mechanisms": [["create", [{"type": "email", "value": e, "invoice": True}
                                                         for e in emails]]] if emails else []}
            if identifier:
                values["identifiers"] = [["create", [identifier]]]
            try:
                (party_id,) = self._acknowledged("model.party.party.create", [values], company=None)
            except ErpError as error:
                # Another worker created the party meanwhile (its code is unique in Tryton): use that one.
                found = self._search("party.party", [("code", "=", code)], limit=1)
                if not found:
                    raise
                logger.info("tryton: party %s was created concurrently (%s)", code, error.message)
        if found:
            party_id = found[0]
            (row,) = self._read("party.party", [party_id], ["addresses", "identifiers", "name"])
            changes: dict[str, Any] = {}
            if row["name"] != customer["name"][:300]:
                changes["name"] = customer["name"][:300]
            if row["addresses"]:
                changes["addresses"] = [["write", [row["addresses"][0]], address]]
            else:
                changes["addresses"] = [["create", [address]]]
            if identifier:
                current = self._read("party.identifier", row["identifiers"], ["type", "code"])
                if not any(i["code"] == identifier["code"] for i in current):
                    changes["identifiers"] = [["create", [identifier]]]
            self._acknowledged("model.party.party.write", [party_id], changes, company=None)
        (row,) = self._read("party.party", [party_id], ["addresses"])
        return party_id, row["addresses"][0]

    def _party_for_invoice(self, customer: dict[str, Any]) -> tuple[int, int]:
        """The invoice's party as Tryton has it (the customer message keeps it up to date), created when new."""
        found = self._search("party.party", [("code", "=", customer["code"])], limit=1)
        if found:
            (row,) = self._read("party.party", found, ["addresses"])
            if row["addresses"]:
                return found[0], row["addresses"][0]
        return self._upsert_party(customer)

    def upsert_customer(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        party_id, _address = self._upsert_party(document["customer"])
        return ErpResult(erp_id=str(party_id))

    # --- invoices -----------------------------------------------------------------------------------
    def _find_invoice(self, company: int | None, number: str) -> dict[str, Any] | None:
        domain: list = [("type", "=", "out"), ("reference", "=", number)]
        if company:
            domain.append(("company", "=", company))
        ids = self._search("account.invoice", domain, company=company, limit=2, order=[("id", "ASC")])
        if not ids:
            return None
        if len(ids) > 1:
            logger.error("tryton: %s invoices carry reference %s (ids %s)", len(ids), number, ids)
        (row,) = self._read("account.invoice", [ids[0]], ["state", "number", "total_amount"], company=company)
        return row

    def _lines(self, document: dict[str, Any], company: _Company, sign: int, entity_code: str) -> list[dict]:
        taxes = document.get("taxes") or []
        tax_ids = []
        for tax in taxes:
            key = (tax["category"], Decimal(tax["rate"]).quantize(CENT))
            if key not in company.taxes:
                raise MappingError(f"Entity {entity_code}: no ERP tax mapped for {key[0]} {key[1]}% "
                                   "(admin: ERP tax mappings).")
            tax_ids.append(company.taxes[key])
        if len(set(tax_ids)) > 1:
            raise MappingError(f"{document['number']} has {len(tax_ids)} tax categories; the Tryton adapter maps "
                               "one tax per document (split the invoice or extend the mapping).")
        lines = []
        for line in document["lines"]:
            quantity, unit_price, amount = (Decimal(line["quantity"]), Decimal(line["unit_price"]),
                                            Decimal(line["amount"]))
            if (quantity * unit_price).quantize(CENT) != amount:
                quantity, unit_price = Decimal(1), amount  # a line whose amount is not qty × price: book the amount
            lines.append({
                "type": "line",
                "account": company.revenue,
                "description": (line.get("description") or line.get("kind") or "")[:500],
                "quantity": float(quantity * sign),
                "unit_price": unit_price,
                "taxes": [["add", sorted(set(tax_ids))]],
            })
        return lines

    def _post_document(self, document: dict[str, Any]) -> ErpResult:
        entity_code = document["seller"]["code"]
        company = self.company(entity_code)
        number = document["number"]
        existing = self._find_invoice(company.id, number)
        if existing is not None:
            if existing["state"] in ("draft", "validated"):  # created by an attempt that died before posting
                self._acknowledged("model.account.invoice.post", [existing["id"]], company=company.id)
                logger.info("tryton: %s found in draft (id %s) and posted", number, existing["id"])
                return ErpResult(erp_id=str(existing["id"]), replayed=True)
            if existing["state"] == "cancelled":
                raise ErpError(f"Tryton has {number} cancelled (id {existing['id']}).", outcome=Outcome.PERMANENT)
            return ErpResult(erp_id=str(existing["id"]), replayed=True)
        if company.currency and company.currency != document["currency"]:
            raise MappingError(f"{number} is in {document['currency']}, the Tryton company of {entity_code} "
                               f"books {company.currency}.")
        sign = -1 if document["type"] == "credit_note" else 1
        party_id, address_id = self._party_for_invoice(document["buyer"])
        currencies = self._search("currency.currency", [("code", "=", document["currency"])], limit=1)
        if not currencies:
            raise MappingError(f"Tryton has no currency {document['currency']}.")
        values: dict[str, Any] = {
            "company": company.id,
            "type": "out",
            "party": party_id,
            "invoice_address": address_id,
            "currency": currencies[0],
            "journal": company.journal,
            "invoice_date": datetime.date.fromisoformat(document["issue_date"]),
            "payment_term_date": datetime.date.fromisoformat(document["due_date"]),
            "reference": number,
            "description": (f"{'Credit note' if sign < 0 else 'Invoice'} {number}"
                            + (f" (credits {document['credit_of']})" if document.get("credit_of") else "")
                            + (f", PO {document['contract']['po_number']}"
                               if (document.get("contract") or {}).get("po_number") else ""))[:300],
            "lines": [["create", self._lines(document, company, sign, entity_code)]],
        }
        values["account"] = company.receivable or self._receivable_of(party_id, company.id)
        (invoice_id,) = self._acknowledged("model.account.invoice.create", [values], company=company.id)
        try:
            self._align_taxes(invoice_id, document, company, sign)
            self._check_totals(invoice_id, document, company, sign)
            self._acknowledged("model.account.invoice.post", [invoice_id], company=company.id)
        except ErpError as error:
            if error.outcome == Outcome.PERMANENT:  # rejected: leave no draft behind in Tryton
                self._call("model.account.invoice.delete", [invoice_id], company=company.id, write=True)
            raise
        return ErpResult(erp_id=str(invoice_id), status_code=201)

    def _align_taxes(self, invoice_id: int, document: dict[str, Any], company: _Company, sign: int) -> None:
        """Where Tryton's rounding of a tax differs from Billable's by cents, Billable's amount is booked.

        Billable rounds each tax once per document, half up. Tryton rounds half to even, and books the
        tax of negative lines (a discount) as a separate tax line rounded on its own — each rounding may
        land a cent apart. A difference of at most one minor unit per Tryton tax line is moved onto the
        largest line of that tax; anything larger is a real difference and fails the totals check.
        """
        wanted: dict[int, Decimal] = {}
        for tax in document.get("taxes") or []:
            tax_id = company.taxes[(tax["category"], Decimal(tax["rate"]).quantize(CENT))]
            wanted[tax_id] = wanted.get(tax_id, Decimal(0)) + Decimal(tax["amount"]) * sign
        (row,) = self._read("account.invoice", [invoice_id], ["taxes"], company=company.id)
        booked: dict[int, list[dict]] = {}
        for line in self._read("account.invoice.tax", row["taxes"], ["tax", "amount"], company=company.id):
            booked.setdefault(line["tax"], []).append(line)
        for tax_id, lines in booked.items():
            if tax_id not in wanted:
                continue
            difference = wanted[tax_id] - sum((line["amount"] for line in lines), Decimal(0))
            if difference and abs(difference) <= CENT * len(lines):
                largest = max(lines, key=lambda line: abs(line["amount"]))
                self._call("model.account.invoice.tax.write", [largest["id"]],
                           {"amount": largest["amount"] + difference}, company=company.id, write=True)
                logger.info("tryton: tax %s of invoice %s aligned by %s to Billable's rounding",
                            tax_id, invoice_id, difference)

    def _check_totals(self, invoice_id: int, document: dict[str, Any], company: _Company, sign: int) -> None:
        (row,) = self._read("account.invoice", [invoice_id], ["untaxed_amount", "tax_amount", "total_amount"],
                            company=company.id)
        totals = document["totals"]
        expected = {"untaxed_amount": Decimal(totals["subtotal"]) * sign, "tax_amount": Decimal(totals["tax"]) * sign,
                    "total_amount": Decimal(totals["total"]) * sign}
        differences = {k: (row[k], v) for k, v in expected.items() if row[k] != v}
        if differences:
            raise ErpError(f"Tryton computes other totals for {document['number']}: "
                           + ", ".join(f"{k} {got} instead of {want}" for k, (got, want) in differences.items()),
                           outcome=Outcome.PERMANENT)

    def _receivable_of(self, party_id: int, company: int) -> int:
        """The party's receivable account in the company, else the company's default (account configuration)."""
        (row,) = self._read("party.party", [party_id], ["account_receivable"], company=company)
        if row.get("account_receivable"):
            return row["account_receivable"]
        (config,) = self._read("account.configuration", [1], ["default_account_receivable"], company=company)
        if not config.get("default_account_receivable"):
            raise MappingError("Tryton has no default receivable account for this company (account configuration).")
        return config["default_account_receivable"]

    def post_invoice(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        return self._post_document(document)

    def post_credit_note(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        return self._post_document(document)

    def invoice_status(self, *, idempotency_key: str = "", number: str = "") -> ErpResult | None:
        """A posted invoice by Billable's number (the key's tail); None for a draft (the next post finishes it)."""
        if idempotency_key:
            kind, _, rest = idempotency_key.partition(":")
            if not kind.startswith("post_"):
                return None  # a customer upsert is sent again: it is idempotent by the party's code
            if kind == "post_journal":
                move = self._find_move(None, rest)
                if move is None or move["state"] != "posted":
                    return None  # (a draft: the post that follows finishes it)
                return ErpResult(erp_id=str(move["id"]), replayed=True)
            number = rest
        found = self._find_invoice(None, number)
        if found is None or found["state"] in ("draft", "validated", "cancelled"):
            return None  # (a cancelled one: the post that follows says so, as a rejection)
        return ErpResult(erp_id=str(found["id"]), replayed=True)

    # --- journals (the revenue close) ---------------------------------------------------------------
    def _find_move(self, company: int | None, reference: str) -> dict[str, Any] | None:
        """The move Billable posted for a journal reference (its `description`), oldest first."""
        domain: list = [("description", "=", reference)]
        if company:
            domain.append(("company", "=", company))
        ids = self._search("account.move", domain, company=company, limit=2, order=[("id", "ASC")])
        if not ids:
            return None
        if len(ids) > 1:
            logger.error("tryton: %s moves carry reference %s (ids %s)", len(ids), reference, ids)
        (row,) = self._read("account.move", [ids[0]], ["state", "number"], company=company)
        return row

    def _close_journal(self, company: _Company, entity_code: str) -> int:
        """The journal of the close's moves: the mapping's code, else MISC, else the first general journal."""
        if company.close_journal is None:
            code = company.close_journal_code or "MISC"
            ids = self._search("account.journal", [("code", "=", code)], company=company.id, limit=1)
            if not ids and not company.close_journal_code:
                ids = self._search("account.journal", [("type", "=", "general")], company=company.id, limit=1,
                                   order=[("code", "ASC")])
            if not ids:
                raise MappingError(f"Entity {entity_code}: no Tryton journal {code} for the revenue close "
                                   "(admin: ERP company mappings, close journal).")
            company.close_journal = ids[0]
        return company.close_journal

    def _move_account(self, company: _Company, code: str, entity_code: str) -> int:
        """A journal line's account: Tryton's account with Billable's code, open, booking without a party."""
        if code not in company.accounts:
            ids = self._search("account.account", [("company", "=", company.id), ("code", "=", code),
                                                   ("closed", "!=", True)], company=company.id, limit=2)
            if len(ids) != 1:
                raise MappingError(f"Entity {entity_code}: Tryton's chart has {len(ids)} open accounts with code "
                                   f"{code!r} (revenue accounts of the entity, Billable admin).")
            (row,) = self._read("account.account", ids, ["party_required", "type"], company=company.id)
            if not row.get("type"):
                raise MappingError(f"Entity {entity_code}: Tryton account {code} is a view (no type): "
                                   "map an account that books.")
            if row.get("party_required"):
                raise MappingError(f"Entity {entity_code}: Tryton account {code} needs a party on every line; the "
                                   "revenue journal books totals per entity — map an account without party.")
            company.accounts[code] = ids[0]
        return company.accounts[code]

    def _period(self, company: _Company, day: datetime.date, reference: str) -> int:
        ids = self._search("account.period", [("company", "=", company.id), ("type", "=", "standard"),
                                              ("start_date", "<=", day), ("end_date", ">=", day)],
                           company=company.id, limit=1)
        if not ids:
            raise MappingError(f"{reference}: Tryton has no accounting period for {day.isoformat()} "
                               "(create the fiscal year and its periods).")
        return ids[0]

    def post_journal(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        """The revenue close's journal → one posted `account.move`; a re-delivery answers the existing move."""
        entity_code = document["entity"]
        reference = document.get("reference") or document["number"]
        company = self.company(entity_code)
        existing = self._find_move(company.id, reference)
        if existing is not None:
            if existing["state"] == "draft":  # created by an attempt that died before posting
                self._acknowledged("model.account.move.post", [existing["id"]], company=company.id)
                logger.info("tryton: journal %s found in draft (move %s) and posted", reference, existing["id"])
            return ErpResult(erp_id=str(existing["id"]), replayed=True)
        if company.currency and company.currency != document["currency"]:
            raise MappingError(f"{reference} is in {document['currency']}, the Tryton company of {entity_code} "
                               f"books {company.currency}.")
        day = datetime.date.fromisoformat(document["date"])
        lines = []
        for line in document["lines"]:
            debit, credit = Decimal(line["debit"]), Decimal(line["credit"])
            if not debit and not credit:
                continue
            lines.append({"account": self._move_account(company, line["account"], entity_code),
                          "debit": debit, "credit": credit, "description": (line.get("label") or "")[:300]})
        if not lines:
            raise ErpError(f"{reference} has no line to book.", outcome=Outcome.PERMANENT)
        if sum(x["debit"] for x in lines) != sum(x["credit"] for x in lines):
            raise ErpError(f"{reference} does not balance: not sent to Tryton.", outcome=Outcome.PERMANENT)
        values = {
            "company": company.id,
            "journal": self._close_journal(company, entity_code),
            "period": self._period(company, day, reference),
            "date": day,
            "description": reference,
            "lines": [["create", lines]],
        }
        (move_id,) = self._acknowledged("model.account.move.create", [values], company=company.id)
        try:
            self._acknowledged("model.account.move.post", [move_id], company=company.id)
        except ErpError as error:
            if error.outcome == Outcome.PERMANENT:  # rejected (a closed period...): leave no draft behind
                self._call("model.account.move.delete", [move_id], company=company.id, write=True)
            raise
        return ErpResult(erp_id=str(move_id), status_code=201)

    # --- payments -----------------------------------------------------------------------------------
    def invoice_payments(self, erp_ids: list[str]) -> list[ErpPayment]:
        """The payment lines Tryton reconciled (fully or partly) against these invoices."""
        ids = [int(i) for i in erp_ids if str(i).isdigit()]
        payments: list[ErpPayment] = []
        for start in range(0, len(ids), 200):
            invoices = self._read("account.invoice", ids[start:start + 200],
                                  ["payment_lines", "currency.code", "type", "company"])
            line_ids = [line for inv in invoices for line in inv["payment_lines"]]
            lines = {row["id"]: row for row in self._read(
                "account.move.line", line_ids, ["date", "debit", "credit", "amount_second_currency", "move_origin"])}
            for inv in invoices:
                currency = inv["currency."]["code"] if isinstance(inv.get("currency."), dict) else ""
                for line_id in inv["payment_lines"]:
                    line = lines[line_id]
                    origin = str(line.get("move_origin") or "")
                    if origin.startswith("account.invoice,") and origin != f"account.invoice,{inv['id']}":
                        # Another invoice's move (a credit note set off against this one): not cash, and
                        # Billable credits the invoice itself. (The pay wizard's moves name this invoice.)
                        continue
                    amount = line["amount_second_currency"]
                    amount = -amount if amount else line["credit"] - line["debit"]
                    payments.append(ErpPayment(payment_id=f"tryton-line-{line_id}", invoice_erp_id=str(inv["id"]),
                                               date=line["date"], amount=amount, currency=currency))
        return payments
