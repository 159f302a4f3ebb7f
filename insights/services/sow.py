"""SOW clause extraction: suggested contract terms, each with its sentence, for a person to accept or reject.

Rule-based on purpose (docs/rules/assistive.md: suggestions a person confirms): regular
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

Reading happens in the background (ADR 0033): the upload only stores the file and
queues a django-q2 task; the worker extracts the text in a child process with a
page cap (`INSIGHTS_SOW_MAX_PAGES`) and a wall-clock limit
(`INSIGHTS_SOW_READ_SECONDS`), outside any transaction, then writes the
suggestions in one short transaction. A pathological PDF fails its reading with a
message; it never stalls a web request or holds a lock.

Accepting needs a reason. On a *draft* contract it applies the term through an
audited save (payment terms override, cap, PO number, billing frequency) or as a
new `ContractRate` for the role effective from today. On a live contract (active,
suspended) it changes nothing on the contract: it drafts a change order carrying
the term (ADR 0032), which goes through submit and approval by a second person
like any other — docs/rules/approvals.md, contract terms change only through an approved
change order.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import ChangeOrder, Contract, ContractRate, Role
from billing.services.change_orders import RateChange, change_order_draft
from insights.models import RoleSynonym, SowReading, SowSuggestion
from insights.sow_rules import RoleBook, Term, extract, parse_amount  # noqa: F401 - parse_amount is part of this API
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from kernel.roles import BILLING_ADMIN, FINANCE_ROLES, has_any_role
from kernel.workflow import require_reason

Field = SowSuggestion.Field
DECIDER_ROLES = (*sorted(FINANCE_ROLES), BILLING_ADMIN)
MAX_BYTES = 10 * 1024 * 1024
def hours_per_day() -> Decimal:
    return Decimal(str(getattr(settings, "INSIGHTS_SOW_HOURS_PER_DAY", 8)))


def may_decide(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False) or has_any_role(user, DECIDER_ROLES))


# --- text -----------------------------------------------------------------------------------------------


def max_pages() -> int:
    return int(getattr(settings, "INSIGHTS_SOW_MAX_PAGES", 50))


def read_seconds() -> float:
    return float(getattr(settings, "INSIGHTS_SOW_READ_SECONDS", 20))


def is_pdf(name: str, content: bytes) -> bool:
    return content[:5] == b"%PDF-" or name.lower().endswith(".pdf")


def _child_limits() -> None:  # pragma: no cover - runs in the child process
    """CPU seconds and memory of the reading child: a runaway PDF is killed by the kernel too."""
    cpu = int(read_seconds()) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = int(getattr(settings, "INSIGHTS_SOW_READ_MEMORY_BYTES", 1024 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def read_pdf_limited(content: bytes) -> tuple[str, int | None]:
    """Text and page count of a PDF, read by `insights.sow_extract` in a child process within the limits."""
    seconds = read_seconds()
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
            [sys.executable, "-m", "insights.sow_extract", "--max-pages", str(max_pages())],
            input=content, capture_output=True, timeout=seconds, preexec_fn=_child_limits,
            cwd=str(settings.BASE_DIR), check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ApplicationError(
            f"Reading the PDF took longer than {seconds:g} seconds and was stopped. Upload the pages with the "
            "commercial terms, or the terms as a text file.", code="read_timeout",
        ) from exc
    try:
        result = json.loads(done.stdout or b"{}")
    except ValueError:
        result = {}
    if done.returncode != 0 or not result:
        raise ApplicationError(
            "Reading the PDF was stopped (it needed more time or memory than a statement of work may take). "
            "Upload the pages with the commercial terms, or the terms as a text file.", code="read_aborted",
        )
    if "error" in result:
        raise ApplicationError(result["error"], code=result.get("code") or "invalid_document")
    return result.get("text") or "", result.get("pages")


def document_text(name: str, content: bytes) -> str:
    """Text of an uploaded SOW: PDF (text layer, via pypdf in a limited child process) or UTF-8 text."""
    if is_pdf(name, content):
        return read_pdf_limited(content)[0]
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode("latin-1")


def role_book(roles: list[Role] | None = None) -> RoleBook:
    """The firm's roles by code and name, with its synonyms (RoleSynonym, admin) and the built-in titles."""
    roles = list(Role.objects.all()) if roles is None else roles
    synonyms = [(s.phrase, s.role.code) for s in RoleSynonym.objects.select_related("role")]
    return RoleBook.build([(r.code, r.name or "") for r in roles], synonyms)


def extract_terms(text: str, *, roles: list[Role] | None = None, contract_currency: str = "") -> list[Term]:
    """The terms the rules find (insights.sow_rules), one per field and one rate per role, each with its
    sentence and a confidence; a day rate becomes hourly at `INSIGHTS_SOW_HOURS_PER_DAY` unless the
    document states its own working day."""
    return extract(text, roles=role_book(roles), hours_per_day=hours_per_day(),
                   hours_per_day_source="firm setting", contract_currency=contract_currency)


def context_of(term: Term) -> str:
    """What a person should see beside the sentence: the role as written, the superseded value, the notes."""
    parts = []
    if term.role_text and not term.role_code:
        parts.append(f"role as written: {term.role_text}")
    if term.supersedes:
        parts.append(f"supersedes: {term.supersedes}")
    if term.note:
        parts.append(term.note)
    return f" [{'; '.join(parts)}]" if parts else ""


# --- services -------------------------------------------------------------------------------------------

READ_TASK = "insights.tasks.read_sow_task"


@transaction.atomic
def sow_upload(*, contract: Contract, name: str, content: bytes, user: Any) -> SowReading:
    """Keep the SOW on the contract (audited) and queue its reading; the suggestions follow from the worker."""
    if not may_decide(user):
        raise PermissionDeniedError("Only finance and billing admins may upload a statement of work.")
    if not content:
        raise ApplicationError("The file is empty.", field_errors={"document": ["Empty file."]})
    if len(content) > MAX_BYTES:
        raise ApplicationError("The file is larger than 10 MB.", field_errors={"document": ["Too large."]})
    contract = Contract.objects.select_for_update().get(pk=contract.pk)
    reading = SowReading(contract=contract, document_name=name[:255], uploaded_by=user if user.pk else None)
    reading.document.save(name, ContentFile(content), save=False)
    reading.save()
    contract.sow_document.name = reading.document.name  # one stored file, kept on the contract
    save_audited(contract, user=user, reason=f"SOW uploaded: {name}"[:100])
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(READ_TASK, reading.pk, task_name=f"sow-reading-{reading.pk}", group="sow_readings")
    )
    return reading


def sow_read(*, reading_id: int) -> SowReading:
    """The worker's part: extract within the limits (no transaction, no lock), then suggest in one transaction.

    Idempotent: only a queued reading is read (compare-and-set), so a retried task does nothing.
    """
    claimed = SowReading.objects.filter(pk=reading_id, status=SowReading.Status.QUEUED).update(
        status=SowReading.Status.READING, started_at=timezone.now()
    )
    reading = SowReading.objects.select_related("contract").get(pk=reading_id)
    if not claimed:
        return reading
    try:
        with reading.document.open("rb") as handle:
            content = handle.read()
        pages = None
        if is_pdf(reading.document_name, content):
            text, pages = read_pdf_limited(content)
        else:
            text = document_text(reading.document_name, content)
        if not text.strip():
            raise ApplicationError(
                "No text found in the document (a scanned PDF needs a text layer).", code="invalid_document"
            )
        created = _suggest(reading, text)
    except (ApplicationError, OSError) as exc:
        message = exc.message if isinstance(exc, ApplicationError) else f"The stored file could not be read: {exc}"
        SowReading.objects.filter(pk=reading.pk).update(
            status=SowReading.Status.FAILED, message=message, finished_at=timezone.now()
        )
    else:
        SowReading.objects.filter(pk=reading.pk).update(
            status=SowReading.Status.DONE, pages=pages, suggestions_created=len(created), finished_at=timezone.now()
        )
    reading.refresh_from_db()
    return reading


@transaction.atomic
def _suggest(reading: SowReading, text: str) -> list[SowSuggestion]:
    """Suggestions of the text; pending duplicates are not repeated (a short transaction under the contract's lock)."""
    contract = Contract.objects.select_for_update().get(pk=reading.contract_id)
    terms = extract_terms(text, contract_currency=contract.currency)
    pending = set(
        SowSuggestion.objects.filter(contract=contract, decision=SowSuggestion.Decision.PENDING).values_list(
            "field", "value", "role_code"
        )
    )
    name = reading.document_name
    created = [
        SowSuggestion(
            contract=contract,
            field=t.field,
            value=t.value[:200],
            role_code=(t.role_code or "")[:40],
            sentence=(t.sentence[:1700] + context_of(t))[:2000],
            confidence=max(Decimal("0"), min(Decimal("1"), t.confidence)),
            document_name=name[:255],
        )
        for t in terms
        if (t.field, t.value[:200], t.role_code) not in pending
    ]
    return SowSuggestion.objects.bulk_create(created)


def open_reading(contract: Contract) -> SowReading | None:
    """The contract's latest reading, for the review page (None: nothing uploaded)."""
    return SowReading.objects.filter(contract=contract).first()


def reading_is_stale(reading: SowReading) -> bool:
    """An open reading far past its time limit: its worker died; the page says so instead of waiting forever."""
    if not reading.is_open:
        return False
    started = reading.started_at or reading.created_at
    grace = float(getattr(settings, "INSIGHTS_SOW_STALE_SECONDS", 600))
    return (timezone.now() - started).total_seconds() > read_seconds() + grace


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
    suggestion.save(update_fields=["decision", "decided_by", "decided_at", "change_order"])
    return suggestion


@transaction.atomic
def sow_suggestion_accept(*, suggestion: SowSuggestion, user: Any, reason: str) -> SowSuggestion:
    """Accept a suggested term, with a reason: a draft contract takes it at once (audited); a live one gets a
    draft change order carrying it, which a second person must approve before anything changes."""
    reason = require_reason(reason, "accept a SOW suggestion")
    suggestion = _lock_pending(suggestion, user)
    contract = Contract.objects.select_for_update().get(pk=suggestion.contract_id)
    if contract.status == Contract.Status.CLOSED:
        raise ApplicationError(f"Contract {contract.code} is closed and cannot be amended.", code="contract_closed")
    why = f"From the SOW ({suggestion.document_name or 'suggestion'} #{suggestion.pk}): {reason}"
    if contract.terms_locked:
        suggestion.change_order = _draft_change_order(contract, suggestion, user=user, reason=reason, why=why)
    else:
        _apply_to_draft(contract, suggestion, user=user, why=why)
    return _decided(suggestion, SowSuggestion.Decision.ACCEPTED, user)


def _apply_to_draft(contract: Contract, suggestion: SowSuggestion, *, user: Any, why: str) -> None:
    """A contract still in draft is being set up: the term is written at once, with who and why in its history."""
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
        contract.billing_frequency = _frequency(value)
        save_audited(contract, user=user, reason=f"Billing frequency {value}. {why}")
    elif suggestion.field == Field.RATE:
        _apply_rate(contract, suggestion, user=user, why=why)


def _frequency(value: str) -> str:
    if value not in Contract.Frequency.values:
        raise ApplicationError(f"Unknown billing frequency {value!r}.")
    return value


def effective_cap(contract: Contract) -> Decimal | None:
    """The contract's cap plus its approved change-order deltas (docs/rules/billing.md rule 8); None: no cap."""
    if contract.cap is None:
        return None
    deltas = contract.change_orders.filter(status=ChangeOrder.Status.APPROVED).aggregate(s=Sum("cap_delta"))["s"]
    return contract.cap + (deltas or Decimal("0"))


def _unchanged(what: str) -> ApplicationError:
    return ApplicationError(f"The contract's {what} already; reject this suggestion.", code="no_change")


def _draft_change_order(contract: Contract, suggestion: SowSuggestion, *, user: Any, reason: str,
                        why: str) -> ChangeOrder:
    """A live contract: the term goes into a draft change order (submit it; someone else approves)."""
    value, terms = suggestion.value, {}
    if suggestion.field == Field.PAYMENT_TERMS:
        if contract.payment_terms_days == int(value):
            raise _unchanged(f"payment terms are {value} days")
        terms["new_payment_terms_days"] = int(value)
    elif suggestion.field == Field.CAP:
        target = _amount_in(value, contract.currency, "cap")
        current = effective_cap(contract)
        if current is None:
            terms["new_cap"] = target
        elif target == current:
            raise _unchanged(f"cap is {current} {contract.currency}")
        else:
            terms["cap_delta"] = target - current
    elif suggestion.field == Field.PO_NUMBER:
        if contract.po_number == value[:60]:
            raise _unchanged(f"PO number is {contract.po_number}")
        terms["new_po_number"] = value[:60]
    elif suggestion.field == Field.BILLING_FREQUENCY:
        if contract.billing_frequency == _frequency(value):
            raise _unchanged(f"billing frequency is {value}")
        terms["new_billing_frequency"] = value
    elif suggestion.field == Field.RATE:
        role = _role_of(suggestion)
        terms["rates"] = [RateChange(role=role, rate=_amount_in(value, contract.currency, "rate"),
                                     effective_from=timezone.localdate())]
    role = f" ({suggestion.role_code})" if suggestion.role_code else ""
    return change_order_draft(
        contract=contract, user=user, reason=reason, code=f"SOW-{suggestion.pk}",
        description=f"{suggestion.get_field_display()}{role} {value}. {why}\n“{suggestion.sentence[:500]}”",
        **terms,
    )


def _amount_in(value: str, currency: str, what: str) -> Decimal:
    amount_text, _, ccy = value.partition(" ")
    if ccy and ccy != currency:
        raise ApplicationError(f"The SOW states the {what} in {ccy}; the contract bills in {currency}. "
                               "Reject it, or change the contract through a change order.", code="currency_mismatch")
    return Decimal(amount_text)


def _role_of(suggestion: SowSuggestion) -> Role:
    if not suggestion.role_code:
        raise ApplicationError("The SOW names a role the firm does not have; add the role or reject this rate.",
                               code="unknown_role")
    role = Role.objects.filter(code=suggestion.role_code).first()
    if role is None:
        raise ApplicationError(f"No role {suggestion.role_code}.", code="unknown_role")
    return role


def _apply_rate(contract: Contract, suggestion: SowSuggestion, *, user: Any, why: str) -> ContractRate:
    role = _role_of(suggestion)
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
def sow_suggestion_reject(*, suggestion: SowSuggestion, user: Any, reason: str = "") -> SowSuggestion:
    """Mark a suggestion rejected: nothing changes on the contract."""
    return _decided(_lock_pending(suggestion, user), SowSuggestion.Decision.REJECTED, user)
