"""Collections use cases: dunning (payment reminders), the collections hand-off, collections profiles.

Dunning (docs/decisions/0025-collections.md):
- Reminder levels fall due at +N days after the invoice's due date (`DUNNING_DEFAULT_OFFSETS`, or the
  client's `CollectionsProfile.dunning_offsets`).
- A run sends at most one reminder per invoice: the **highest** level due, so the text matches how late
  the invoice really is. Lower levels it passes over are written down as `skipped` notices — never
  silently. Failures are recorded (`failed`) and retried by the next run.
- Never for an invoice disputed for its whole balance, a client in a payment plan, or an invoice handed
  off to collections follow-up. A partial dispute holds only its amount: the undisputed rest is reminded,
  and the reminder asks for that rest, naming the part in dispute (ADR 0038). Credit hold does not stop
  reminders.
- Idempotent: each invoice is locked while its reminder is decided, sent and recorded; a level already
  `sent` is never sent again (the partial unique constraint on `DunningNotice` backs it up).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import make_msgid
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing.models import Client, Invoice
from disputes.models import CollectionsHandoff, CollectionsProfile, DunningNotice
from disputes.selectors import collections as sel
from kernel.audit import save_audited
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError
from kernel.money import round_money
from kernel.roles import COLLECTIONS, FINANCE_ANALYST, FINANCE_CONTROLLER, has_any_role
from kernel.workflow import apply_transition, require_reason

logger = logging.getLogger(__name__)

#: Who sends reminders by hand and hands invoices off (the scheduled run acts without a user).
DUNNING_ROLES = (COLLECTIONS,)
HANDOFF_ROLES = (COLLECTIONS,)
#: Who sets a client's payment plan and reminder offsets.
PROFILE_ROLES = (COLLECTIONS, FINANCE_ANALYST, FINANCE_CONTROLLER)
MAX_LEVELS = 6
MAX_OFFSET_DAYS = 365

SENT, FAILED, SKIPPED = "sent", "failed", "skipped"


def format_money(amount: Any, currency: str) -> str:
    """`1234.5, EUR` → `1,234.50 EUR` (for e-mails and messages)."""
    return f"{round_money(amount, currency):,} {currency}"


def _allowed(user: Any, roles: tuple[str, ...]) -> bool:
    return bool(getattr(user, "is_superuser", False)) or has_any_role(user, roles)


def can_dun(user: Any) -> bool:
    return _allowed(user, DUNNING_ROLES)


def can_hand_off(user: Any) -> bool:
    return _allowed(user, HANDOFF_ROLES)


def can_edit_profile(user: Any) -> bool:
    return _allowed(user, PROFILE_ROLES)


def _actor(user: Any) -> Any:
    return user if getattr(user, "pk", None) else None


# --- dunning ----------------------------------------------------------------------------------------------


@dataclass
class DunningSummary:
    today: datetime.date
    dry_run: bool
    planned: list[sel.DunningItem] = field(default_factory=list)
    notices: list[DunningNotice] = field(default_factory=list)
    held_back: dict[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return sum(1 for n in self.notices if n.result == SENT)

    @property
    def failed(self) -> int:
        return sum(1 for n in self.notices if n.result == FAILED)

    def as_text(self) -> str:
        if self.dry_run:
            head = f"Dunning {self.today:%Y-%m-%d} (dry run): {len(self.planned)} reminder(s) due"
        else:
            head = f"Dunning {self.today:%Y-%m-%d}: {self.sent} sent, {self.failed} failed"
        held = ", ".join(f"{n} {sel.Exclusion.LABELS[k].lower()}" for k, n in self.held_back.items() if n)
        return head + (f"; held back: {held}" if held else "") + "."


def dunning_run(
    *, today: datetime.date | None = None, user: Any = None, dry_run: bool = False
) -> DunningSummary:
    """Send every reminder due at `today`: one per invoice, the highest level reached; record each.

    Called daily by the django-q2 schedule (no user), by `send_dunning`, and by collections' "send now".
    Each invoice is its own transaction (`dunning_send`), so one failure never undoes another's record.
    """
    if user is not None and not can_dun(user):
        raise PermissionDeniedError("Only collections may send payment reminders.")
    today = today or timezone.localdate()
    items = sel.dunning_items(today=today)
    summary = DunningSummary(today=today, dry_run=dry_run, planned=[i for i in items if i.is_due])
    for item in items:
        if item.excluded and item.days_past_due > 0 and item.due_level > item.sent_level:
            summary.held_back[item.excluded] = summary.held_back.get(item.excluded, 0) + 1
    if dry_run:
        return summary
    for item in summary.planned:
        notice = dunning_send(invoice_id=item.invoice.pk, today=today, user=user)
        if notice is not None:
            summary.notices.append(notice)
    logger.info(summary.as_text())
    return summary


@transaction.atomic
def dunning_send(*, invoice_id: int, today: datetime.date, user: Any = None) -> DunningNotice | None:
    """Decide, send and record the reminder of one invoice, under its row lock; None when nothing is due.

    The decision is taken again under the lock (the invoice may have been disputed, paid or
    reminded by a concurrent run since the plan was made), so a reminder never reaches a
    disputed invoice or goes out twice. The e-mail is sent inside the transaction: a crash
    between sending and committing can at worst send one reminder twice, never lose a record.
    """
    locked = Invoice.objects.select_for_update(of=("self",)).filter(pk=invoice_id).first()
    if locked is None:
        return None
    items = sel.dunning_items(today=today, invoice_ids=[invoice_id])
    if not items or not items[0].is_due:
        return None
    item = items[0]
    invoice = item.invoice
    level = item.level_to_send
    recipients = invoice.client.billing_email_list
    message_id, error = "", ""
    if not recipients:
        error = f"Client {invoice.client.code} has no billing e-mail address."
    else:
        try:
            message = _reminder_message(item, recipients)
            message_id = message.extra_headers["Message-ID"]
            message.send(fail_silently=False)
        except Exception as exc:  # the mail server's refusal is the finding to record and retry
            error = f"{type(exc).__name__}: {exc}"
            message_id = ""
    now = timezone.now()
    notice = DunningNotice.objects.create(
        invoice=invoice,
        level=level,
        days_overdue=item.days_past_due,
        balance=item.amount_due,
        held_in_dispute=item.held_in_dispute,
        to=", ".join(recipients),
        sent_at=now,
        message_id=message_id,
        result=FAILED if error else SENT,
        error=error,
        sent_by=_actor(user),
    )
    if error:
        logger.warning("Reminder level %s for %s failed: %s", level, invoice.number, error)
        return notice
    passed_over = set(range(item.sent_level + 1, level)) - set(
        DunningNotice.objects.filter(invoice=invoice, level__lt=level, result__in=[SENT, SKIPPED]).values_list(
            "level", flat=True
        )
    )
    for lower in sorted(passed_over):
        DunningNotice.objects.create(
            invoice=invoice,
            level=lower,
            days_overdue=item.days_past_due,
            balance=item.amount_due,
            held_in_dispute=item.held_in_dispute,
            to="",
            sent_at=now,
            result=SKIPPED,
            error=f"Passed over: level {level} was already due ({item.days_past_due} days past due) "
            f"when this invoice was next reminded.",
            sent_by=_actor(user),
        )
    logger.info("Sent reminder level %s for %s to %s (%s)", level, invoice.number, notice.to, message_id)
    return notice


def _reminder_message(item: sel.DunningItem, recipients: list[str]) -> EmailMultiAlternatives:
    """The reminder e-mail (text and HTML), with the invoice PDF attached when it can be had."""
    invoice = item.invoice
    entity, client = invoice.entity, invoice.client
    levels = len(item.offsets)
    document = _invoice_pdf(invoice) if getattr(settings, "DUNNING_ATTACH_PDF", True) else None
    context = {
        "invoice": invoice,
        "client": client,
        "entity": entity,
        "level": item.level_to_send,
        "levels": levels,
        "is_final": item.level_to_send == levels and levels >= 2,
        "label": item.label,
        "days_past_due": item.days_past_due,
        "balance": format_money(item.amount_due, invoice.currency),
        "open_balance": format_money(invoice.open_balance, invoice.currency),
        "disputed": format_money(item.held_in_dispute, invoice.currency) if item.held_in_dispute else "",
        "total": format_money(invoice.total, invoice.currency),
        "paid_or_credited": invoice.total != invoice.open_balance,
        "attached": document is not None,
        "reminded_before": item.sent_level > 0,
    }
    subject = f"{item.label}: invoice {invoice.number} from {entity.name} is overdue"
    domain = getattr(settings, "EMAIL_MESSAGE_ID_DOMAIN", "") or "billable.local"
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("disputes/email/dunning.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"Message-ID": make_msgid(idstring=f"dunning-{invoice.pk}-{item.level_to_send}", domain=domain)},
    )
    message.attach_alternative(render_to_string("disputes/email/dunning.html", context), "text/html")
    if document is not None:
        message.attach(document.filename, bytes(document.content), document.content_type)
    return message


def _invoice_pdf(invoice: Invoice) -> Any:
    """The stored invoice PDF, or None: a reminder still goes out when the copy cannot be had."""
    from billing.services.documents import invoice_document

    try:
        with transaction.atomic():  # a failed render must not break the reminder's transaction
            return invoice_document(invoice=invoice, kind="pdf")
    except Exception as exc:  # the copy is a courtesy; the reminder matters
        logger.warning("Reminder for %s goes without its PDF: %s", invoice.number, exc)
        return None


# --- collections hand-off ---------------------------------------------------------------------------------


@transaction.atomic
def handoff_create(*, invoice: Invoice, user: Any, reason: str, assignee: str = "") -> CollectionsHandoff:
    """Hand an open, overdue-or-not invoice to an agency, legal or an account manager; reminders stop."""
    if not can_hand_off(user):
        raise PermissionDeniedError("Only collections may hand an invoice off.")
    reason = require_reason(reason, "hand an invoice off")
    invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=invoice.pk)
    if invoice.kind != Invoice.Kind.INVOICE or invoice.status not in sel.OPEN_STATUSES or invoice.balance <= 0:
        raise ApplicationError(
            f"{invoice.display_number} is {invoice.get_status_display().lower()} with "
            f"{format_money(invoice.balance, invoice.currency)} open: only open receivables are handed off.",
            code="not_open",
        )
    if CollectionsHandoff.objects.filter(invoice=invoice, status=CollectionsHandoff.Status.OPEN).exists():
        raise ConflictError(f"{invoice.number} is already handed off; close that hand-off first.")
    handoff = CollectionsHandoff(
        invoice=invoice,
        reason=reason,
        assignee=assignee.strip()[:200],
        handed_off_by=user,
        handed_off_at=timezone.now(),
    )
    save_audited(handoff, user=user, reason=f"Handed off: {reason}")
    return handoff


@transaction.atomic
def handoff_close(*, handoff: CollectionsHandoff, user: Any, note: str) -> CollectionsHandoff:
    """Close a hand-off (paid, settled, written off, returned); reminders may resume if still open."""
    if not can_hand_off(user):
        raise PermissionDeniedError("Only collections may close a hand-off.")
    note = require_reason(note, "close a hand-off")
    handoff = CollectionsHandoff.objects.select_for_update().select_related("invoice").get(pk=handoff.pk)
    apply_transition(handoff, "close", user=user, reason=note, label=f"the hand-off of {handoff.invoice}")
    handoff.closed_note = note
    save_audited(handoff, user=user, reason=f"Closed: {note}")
    return handoff


# --- collections profile ----------------------------------------------------------------------------------


def parse_offsets(value: Any) -> list[int]:
    """`"7, 21, 45"` or `[7, 21, 45]` → `[7, 21, 45]`; empty → `[]` (the firm's default)."""
    if value in (None, ""):
        return []
    parts = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    offsets: list[int] = []
    for part in parts:
        text = str(part).strip()
        if not text:
            continue
        try:
            offsets.append(int(text))
        except ValueError as exc:
            raise ApplicationError(
                f"{text!r} is not a number of days.", code="invalid_offsets",
                field_errors={"dunning_offsets": ["Days after due, e.g. 7, 21, 45."]},
            ) from exc
    if len(offsets) > MAX_LEVELS or any(o < 1 or o > MAX_OFFSET_DAYS for o in offsets) or offsets != sorted(
        set(offsets)
    ):
        raise ApplicationError(
            f"Reminder offsets must be 1 to {MAX_LEVELS} increasing numbers of days between 1 and {MAX_OFFSET_DAYS}.",
            code="invalid_offsets",
            field_errors={"dunning_offsets": ["Increasing days after due, e.g. 7, 21, 45."]},
        )
    return offsets


@transaction.atomic
def collections_profile_update(
    *,
    client: Client,
    user: Any,
    in_payment_plan: bool,
    payment_plan_note: str = "",
    dunning_offsets: Any = None,
    reason: str = "",
) -> CollectionsProfile:
    """Set a client's payment plan (reminders stop while it runs) and reminder offsets; audited."""
    if not can_edit_profile(user):
        raise PermissionDeniedError("Only collections and finance may change a client's collections profile.")
    offsets = parse_offsets(dunning_offsets)
    note = (payment_plan_note or "").strip()
    if in_payment_plan and not note:
        raise ApplicationError(
            "Say what the payment plan is (amounts, dates, who agreed) before turning it on.",
            code="note_required", field_errors={"payment_plan_note": ["Required for a payment plan."]},
        )
    Client.objects.select_for_update().filter(pk=client.pk).first()  # serialise edits of one client
    profile = CollectionsProfile.objects.filter(client=client).first() or CollectionsProfile(client=client)
    changes = []
    if profile.in_payment_plan != in_payment_plan:
        changes.append("payment plan " + ("started" if in_payment_plan else "ended"))
    if (profile.dunning_offsets or []) != offsets:
        changes.append("reminder offsets " + (", ".join(map(str, offsets)) if offsets else "firm default"))
    if profile.payment_plan_note != note:
        changes.append("plan note " + ("changed" if note else "cleared"))
    if not changes and profile.pk:
        return profile
    profile.in_payment_plan = in_payment_plan
    profile.payment_plan_note = note
    profile.dunning_offsets = offsets
    why = (reason or "").strip() or "; ".join(changes).capitalize()
    save_audited(profile, user=user, reason=why)
    return profile

