"""SOW clause extraction: suggested contract terms, each with its sentence, for a person to accept or reject.

Rule-based on purpose (DESIGN §8: suggestions a person confirms): regular
expressions over the text of the statement of work (PDF through pypdf, or
plain text), so every suggestion can be traced to the sentence that produced
it and the rules can be read. Found: payment terms ("Net 45", "within 30 days
of the invoice date"), rates per role ("Senior Consultant: EUR 1,450 per day",
per hour or per day — a day is `INSIGHTS_SOW_HOURS_PER_DAY` = 8 hours), a cap
("not to exceed", "NTE", "capped at"), a PO number, the billing frequency
(monthly, quarterly, on milestones). Limits: English wording only; amounts need
a currency code or sign next to them; tables that pypdf flattens into one line
may merge several rates into one sentence (each still found); scanned PDFs
without a text layer give nothing; negations ("no cap") are not understood —
which is why a person decides.

Accepting applies the term through an audited save on the contract (payment
terms override, cap, PO number, billing frequency) or as a new `ContractRate`
for the role effective from today, with the acting user and the reason in the
history.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from billing.models import Contract, ContractRate, Role
from billing.services.audit import save_audited
from insights.models import SowSuggestion
from portal.errors import ApplicationError, PermissionDeniedError
from portal.roles import BILLING_ADMIN, FINANCE_ANALYST, FINANCE_CONTROLLER, has_any_role

Field = SowSuggestion.Field
DECIDER_ROLES = (FINANCE_ANALYST, FINANCE_CONTROLLER, BILLING_ADMIN)
MAX_BYTES = 10 * 1024 * 1024
CURRENCY_SIGNS = {"€": "EUR", "$": "USD", "£": "GBP"}
_CCY = r"(?:EUR|USD|GBP|CHF|€|\$|£)"
_AMOUNT = r"\d[\d,.' ]*\d|\d"
_MONEY = rf"(?:(?P<ccy>{_CCY})\s?(?P<amt>{_AMOUNT})|(?P<amt2>{_AMOUNT})\s?(?P<ccy2>{_CCY}))"


def hours_per_day() -> Decimal:
    return Decimal(str(getattr(settings, "INSIGHTS_SOW_HOURS_PER_DAY", 8)))


def may_decide(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False) or has_any_role(user, DECIDER_ROLES))


# --- text -----------------------------------------------------------------------------------------------


def document_text(name: str, content: bytes) -> str:
    """Text of an uploaded SOW: PDF (text layer, via pypdf) or UTF-8 text."""
    if content[:5] == b"%PDF-" or name.lower().endswith(".pdf"):
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(io.BytesIO(content))
            return "\n".join(page.extract_text() or "" for page in reader.pages)
        except (PdfReadError, ValueError, KeyError) as exc:
            raise ApplicationError(f"The PDF could not be read: {exc}", code="invalid_document") from exc
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode("latin-1")


def sentences(text: str) -> list[str]:
    """Sentences and list items: a wrapped line continues its sentence, a new item starts a new one."""
    lines = [re.sub(r"\s+", " ", line).strip(" \t•*·-") for line in text.replace("\r", "").split("\n")]
    merged: list[str] = []
    for line in lines:
        if not line:
            merged.append("")
            continue
        if merged and merged[-1] and not re.search(r"[.;:!?]$", merged[-1]) and line[:1].islower():
            merged[-1] += " " + line
        else:
            merged.append(line)
    out = []
    for block in merged:
        out.extend(s.strip() for s in re.split(r"(?<=[.;!?])\s+(?=[A-Z(])", block) if s.strip())
    return out


def parse_amount(text: str) -> Decimal | None:
    """'1,450' '1.450,00' '250,000.00' "1'450" '1 450' → Decimal."""
    s = re.sub(r"[\s']", "", text)
    if "," in s and "." in s:
        s = s.replace(",", "") if s.rfind(".") > s.rfind(",") else s.replace(".", "").replace(",", ".")
    elif "," in s:
        s = s.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", s) else s.replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(\.\d{3})+", s):
        s = s.replace(".", "")
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


def _money(match: re.Match) -> tuple[Decimal | None, str]:
    amount = parse_amount(match.group("amt") or match.group("amt2") or "")
    ccy = match.group("ccy") or match.group("ccy2") or ""
    return amount, CURRENCY_SIGNS.get(ccy, ccy)


# --- extraction -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    field: str
    value: str
    sentence: str
    confidence: Decimal
    role_code: str = ""
    role_text: str = ""


_TERMS = [
    (re.compile(r"\bnet\s*(\d{1,3})\b(?!\s*%)", re.I), Decimal("0.90")),
    (re.compile(r"\bwithin\s+(\d{1,3})\s+(?:calendar\s+)?days\s+(?:of|from|after|following)\b[^.]*\binvoice", re.I),
     Decimal("0.85")),
    (re.compile(r"\bpayable\s+within\s+(\d{1,3})\s+days\b", re.I), Decimal("0.80")),
    (re.compile(r"\bpayment\s+terms?\b[^.]*?\b(\d{1,3})\s+days\b", re.I), Decimal("0.75")),
]
_RATE_UNIT = r"(?:per|/|an?)\s*(?P<unit>hour|hr|h|person[- ]day|man[- ]day|day)\b"
_RATES = [
    (re.compile(rf"(?P<role>[A-Z][A-Za-z]+(?:[ -][A-Za-z]+){{0,3}})\s*[:–\-]\s*{_MONEY}\s*{_RATE_UNIT}"),
     Decimal("0.85")),
    (re.compile(
        rf"\brate\s+(?:for|of)\s+(?:an?\s+|the\s+|each\s+)?(?P<role>[A-Za-z]+(?:[ -][A-Za-z]+){{0,3}}?)\s+"
        rf"(?:is|will\s+be|shall\s+be|of|at)\s+{_MONEY}\s*{_RATE_UNIT}", re.I), Decimal("0.80")),
]
_CAPS = [
    (re.compile(rf"\b(?:not\s+to\s+exceed|NTE|shall\s+not\s+exceed|will\s+not\s+exceed)\b[^.]*?{_MONEY}", re.I),
     Decimal("0.90")),
    (re.compile(rf"\b(?:capped\s+at|cap\s+of|maximum\s+(?:total\s+)?(?:fees?|amount|budget)\s+of)\s*{_MONEY}", re.I),
     Decimal("0.75")),
]
_PO = re.compile(
    r"\b(?:purchase\s+order|P\.?\s?O\.?)\s*(?:number|no\.?|#|reference)?\s*[:#]?\s*(?P<po>[A-Z0-9][A-Z0-9\-/]{3,30})",
    re.I,
)
_FREQUENCY = [
    (re.compile(r"\b(?:invoic\w*|bill\w*)\b[^.]*?\b(?:upon|on|at|after)\s+(?:the\s+)?(?:completion|acceptance|"
                r"achievement)\s+of\s+(?:each\s+)?milestones?", re.I), "on_milestone", Decimal("0.80")),
    (re.compile(r"\b(?:invoic\w*|bill\w*)\b[^.]*?\bon\s+milestones?\b", re.I), "on_milestone", Decimal("0.75")),
    (re.compile(r"\b(?:invoic\w*|bill\w*)\b[^.]*?\b(monthly|quarterly)\b|\b(monthly|quarterly)\s+in\s+arrears\b"
                r"|\b(?:invoic\w*|bill\w*)\s+(?:each|every)\s+(month|quarter)\b", re.I), None, Decimal("0.80")),
]


def _match_role(text: str, roles: list[Role]) -> str:
    wanted = re.sub(r"\s+", " ", text).strip().lower()
    for role in roles:
        if wanted in (role.code.lower(), (role.name or "").lower()):
            return role.code
    for role in roles:  # "Senior Consultants" → "Senior consultant"
        if wanted.rstrip("s") in (role.code.lower(), (role.name or "").lower()):
            return role.code
    return ""


def extract_terms(text: str, *, roles: list[Role] | None = None, contract_currency: str = "") -> list[Found]:
    """Every term the rules find, with its sentence and a confidence; duplicates keep the surest."""
    roles = list(Role.objects.all()) if roles is None else roles
    per_day = hours_per_day()
    found: list[Found] = []
    for sentence in sentences(text):
        for pattern, confidence in _TERMS:
            for m in pattern.finditer(sentence):
                days = int(m.group(1))
                if 0 < days <= 180:
                    found.append(Found(Field.PAYMENT_TERMS, str(days), sentence, confidence))
        for pattern, confidence in _RATES:
            for m in pattern.finditer(sentence):
                amount, ccy = _money(m)
                if amount is None or amount <= 0:
                    continue
                unit = m.group("unit").lower()
                hourly = amount / per_day if "day" in unit else amount
                role_text = m.group("role").strip()
                role_code = _match_role(role_text, roles)
                conf = confidence
                if not role_code:
                    conf -= Decimal("0.30")
                if contract_currency and ccy != contract_currency:
                    conf -= Decimal("0.20")
                found.append(
                    Found(Field.RATE, f"{hourly.quantize(Decimal('0.0001'))} {ccy}", sentence, conf, role_code,
                          role_text)
                )
        for pattern, confidence in _CAPS:
            for m in pattern.finditer(sentence):
                amount, ccy = _money(m)
                if amount is not None and amount > 0:
                    conf = confidence - (Decimal("0.20") if contract_currency and ccy != contract_currency else 0)
                    found.append(Found(Field.CAP, f"{amount.quantize(Decimal('0.01'))} {ccy}", sentence, conf))
        for m in _PO.finditer(sentence):
            po = m.group("po").rstrip(".,;")
            if re.search(r"\d", po):
                found.append(Found(Field.PO_NUMBER, po, sentence, Decimal("0.85")))
        for pattern, value, confidence in _FREQUENCY:
            m = pattern.search(sentence)
            if m:
                word = value or next(g for g in m.groups() if g).lower()
                freq = {"month": "monthly", "quarter": "quarterly"}.get(word, word)
                found.append(Found(Field.BILLING_FREQUENCY, freq, sentence, confidence))
                break
    best: dict[tuple[str, str, str], Found] = {}
    for f in found:
        key = (f.field, f.value, f.role_code or f.role_text)
        if key not in best or f.confidence > best[key].confidence:
            best[key] = f
    return list(best.values())


# --- services -------------------------------------------------------------------------------------------


@transaction.atomic
def sow_upload(*, contract: Contract, name: str, content: bytes, user: Any) -> list[SowSuggestion]:
    """Keep the SOW on the contract (audited) and suggest its terms; pending duplicates are not repeated."""
    if not may_decide(user):
        raise PermissionDeniedError("Only finance and billing admins may upload a statement of work.")
    if not content:
        raise ApplicationError("The file is empty.", field_errors={"document": ["Empty file."]})
    if len(content) > MAX_BYTES:
        raise ApplicationError("The file is larger than 10 MB.", field_errors={"document": ["Too large."]})
    contract = Contract.objects.select_for_update().get(pk=contract.pk)
    text = document_text(name, content)
    if not text.strip():
        raise ApplicationError(
            "No text found in the document (a scanned PDF needs a text layer).", code="invalid_document"
        )
    contract.sow_document.save(name, ContentFile(content), save=False)
    save_audited(contract, user=user, reason=f"SOW uploaded: {name}")
    terms = extract_terms(text, contract_currency=contract.currency)
    pending = set(
        SowSuggestion.objects.filter(contract=contract, decision=SowSuggestion.Decision.PENDING).values_list(
            "field", "value", "role_code"
        )
    )
    created = [
        SowSuggestion(
            contract=contract,
            field=t.field,
            value=t.value[:200],
            role_code=(t.role_code or "")[:40],
            sentence=t.sentence[:2000] + (f" [role as written: {t.role_text}]" if t.role_text and not t.role_code
                                          else ""),
            confidence=max(Decimal("0"), min(Decimal("1"), t.confidence)),
            document_name=name[:255],
        )
        for t in terms
        if (t.field, t.value[:200], t.role_code) not in pending
    ]
    return SowSuggestion.objects.bulk_create(created)


def _lock_pending(suggestion: SowSuggestion, user: Any) -> SowSuggestion:
    if not may_decide(user):
        raise PermissionDeniedError("Only finance and billing admins may decide SOW suggestions.")
    locked = SowSuggestion.objects.select_for_update().select_related("contract").get(pk=suggestion.pk)
    if locked.decision != SowSuggestion.Decision.PENDING:
        raise ApplicationError(f"This suggestion was already {locked.get_decision_display().lower()}.",
                               code="invalid_transition")
    return locked


def _decided(suggestion: SowSuggestion, decision: str, user: Any) -> SowSuggestion:
    suggestion.decision = decision
    suggestion.decided_by = user
    suggestion.decided_at = timezone.now()
    suggestion.save(update_fields=["decision", "decided_by", "decided_at"])
    return suggestion


@transaction.atomic
def sow_suggestion_accept(*, suggestion: SowSuggestion, user: Any, reason: str = "") -> SowSuggestion:
    """Apply the suggested term to the contract through an audited save, then mark it accepted."""
    suggestion = _lock_pending(suggestion, user)
    contract = Contract.objects.select_for_update().get(pk=suggestion.contract_id)
    why = f"From the SOW ({suggestion.document_name or 'suggestion'} #{suggestion.pk})"
    if reason.strip():
        why += f": {reason.strip()}"
    value = suggestion.value
    if suggestion.field == Field.PAYMENT_TERMS:
        contract.payment_terms_days = int(value)
        save_audited(contract, user=user, reason=f"Payment terms {value} days. {why}")
    elif suggestion.field == Field.CAP:
        contract.cap = _amount_in(value, contract.currency, "cap")
        save_audited(contract, user=user, reason=f"Cap {contract.cap} {contract.currency}. {why}")
    elif suggestion.field == Field.PO_NUMBER:
        contract.po_number = value[:60]
        save_audited(contract, user=user, reason=f"PO number {contract.po_number}. {why}")
    elif suggestion.field == Field.BILLING_FREQUENCY:
        if value not in Contract.Frequency.values:
            raise ApplicationError(f"Unknown billing frequency {value!r}.")
        contract.billing_frequency = value
        save_audited(contract, user=user, reason=f"Billing frequency {value}. {why}")
    elif suggestion.field == Field.RATE:
        _apply_rate(contract, suggestion, user=user, why=why)
    return _decided(suggestion, SowSuggestion.Decision.ACCEPTED, user)


def _amount_in(value: str, currency: str, what: str) -> Decimal:
    amount_text, _, ccy = value.partition(" ")
    if ccy and ccy != currency:
        raise ApplicationError(f"The SOW states the {what} in {ccy}; the contract bills in {currency}. "
                               "Reject it, or change the contract through a change order.", code="currency_mismatch")
    return Decimal(amount_text)


def _apply_rate(contract: Contract, suggestion: SowSuggestion, *, user: Any, why: str) -> ContractRate:
    if not suggestion.role_code:
        raise ApplicationError("The SOW names a role the firm does not have; add the role or reject this rate.",
                               code="unknown_role")
    role = Role.objects.filter(code=suggestion.role_code).first()
    if role is None:
        raise ApplicationError(f"No role {suggestion.role_code}.", code="unknown_role")
    rate = _amount_in(suggestion.value, contract.currency, "rate")
    today = timezone.localdate()
    existing = ContractRate.objects.filter(
        contract=contract, role=role, person__isnull=True, effective_from=today, change_order__isnull=True
    ).first()
    contract_rate = existing or ContractRate(contract=contract, role=role, effective_from=today)
    contract_rate.rate = rate
    save_audited(contract_rate, user=user, reason=f"Rate {role.code} {rate} {contract.currency}/h from {today}. {why}")
    return contract_rate


@transaction.atomic
def sow_suggestion_reject(*, suggestion: SowSuggestion, user: Any) -> SowSuggestion:
    """Mark a suggestion rejected: nothing changes on the contract."""
    return _decided(_lock_pending(suggestion, user), SowSuggestion.Decision.REJECTED, user)
