"""Persistence for billing runs: priced drafts become invoices, lines, taxes, exceptions, links and audit rows.

Writes only what the engine priced (`InvoiceDraft`s), inside the caller's transaction (a run's chunk,
a revalidation). Items are linked by a compare-and-set UPDATE whose row count must match, else the
transaction rolls back (never bill twice, ADR 0003). On PostgreSQL the many rows of a run (lines, their
history, exceptions) go by COPY with ids drawn from the tables' sequences (`kernel.bulk`): the same
rows `bulk_create` / `bulk_history_create` would write; other databases use those. The `StateLog` row
of each billed item is written by the linking statement itself (`_link_postgresql`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing.fix_links import exception_fix_url
from billing.models import (
    BillingRun,
    Expense,
    Invoice,
    InvoiceException,
    InvoiceLine,
    InvoiceTax,
    Milestone,
    TimeEntry,
)
from billing.services.billing_engine import InvoiceDraft
from kernel.bulk import FastInstances, copy_create, copy_create_with_history, copy_rows, copy_supported
from kernel.errors import ConflictError

LINK_BATCH = 50_000


def write_drafts(
    drafts: Sequence[InvoiceDraft],
    *,
    run: BillingRun | None,
    user: Any,
) -> list[Invoice]:
    """Persist priced drafts: invoices, lines, taxes, exceptions, item links, audit rows.

    Scoring and routing for approval follow in the run (`billing.services.billing_run`).
    """
    if not drafts:
        return []
    actor = user if getattr(user, "pk", None) else None
    reason = f"Billing run {run.pk}" if run else "Billing"
    invoices = [
        Invoice(
            kind=Invoice.Kind.INVOICE,
            entity=d.contract.entity,
            client=d.contract.client,
            contract=d.contract,
            project_id=d.project_id,
            billing_run=run,
            period_start=d.period_start,
            period_end=d.period_end,
            retainer_period=d.retainer_period,
            service_start=d.service_start,
            service_end=d.service_end,
            issue_date=d.issue_date,
            due_date=d.due_date,
            currency=d.currency,
            po_number=d.contract.po_number,
            purchase_order=d.purchase_order,
            consolidated=d.consolidated,
            subtotal=d.subtotal,
            tax_total=d.tax_total,
            total=d.total,
            status=Invoice.Status.EXCEPTION if d.is_blocked else Invoice.Status.PENDING_APPROVAL,
            prepared_by=actor,
        )
        for d in drafts
    ]
    invoices = copy_create_with_history(invoices, Invoice, actor=actor, reason=reason, batch_size=1000)
    write_invoice_contents(list(zip(invoices, drafts, strict=True)), actor=actor, reason=reason, run=run)
    _log_invoice_transitions(invoices, drafts, actor, reason)
    return invoices


def write_invoice_contents(
    pairs: Sequence[tuple[Invoice, InvoiceDraft]], *, actor: Any, reason: str, run: BillingRun | None
) -> None:
    """Lines, taxes and exceptions of saved invoices, and the links of the items they bill."""
    lines: list[InvoiceLine] = []
    links: dict[type, list[tuple[int, InvoiceLine]]] = {TimeEntry: [], Expense: [], Milestone: []}
    taxes: list[InvoiceTax] = []
    exceptions: list[InvoiceException] = []
    new_line = FastInstances(InvoiceLine)
    for invoice, draft in pairs:
        for position, ld in enumerate(draft.lines, start=1):
            line = new_line(
                invoice_id=invoice.pk,
                position=position,
                kind=ld.kind,
                contract_id=ld.contract_id or draft.contract.id,
                project_id=ld.project_id,
                role_id=ld.role_id,
                description=ld.description[:500],
                quantity=ld.quantity,
                unit_price=ld.unit_price,
                amount=ld.amount,
                rate_source=ld.rate_source,
                rate_source_id=ld.rate_source_id,
                rate_source_label=ld.rate_source_label[:200],
                service_start=ld.service_start,
                service_end=ld.service_end,
            )
            lines.append(line)
            links[TimeEntry].extend((i, line) for i in ld.time_entry_ids)
            links[Expense].extend((i, line) for i in ld.expense_ids)
            links[Milestone].extend((i, line) for i in ld.milestone_ids)
        taxes.extend(
            InvoiceTax(
                invoice=invoice, category=t.category, rate=t.rate, base=t.base, amount=t.amount, legal_note=t.legal_note
            )
            for t in draft.taxes
        )
        exceptions.extend(
            InvoiceException(
                invoice=invoice,
                code=e.code,
                severity=e.severity,
                message=e.message,
                fix_hint=e.fix_hint,
                fix_url=exception_fix_url(e.code, draft),
                amount=e.amount,
            )
            for e in draft.exceptions
        )
    copy_create_with_history(lines, InvoiceLine, actor=actor, reason=reason, batch_size=2000)
    copy_create_with_history(taxes, InvoiceTax, actor=actor, reason=reason, batch_size=2000)
    copy_create(exceptions, InvoiceException, batch_size=2000)
    for model, model_links in links.items():
        link_items(model, [(item_id, line.pk) for item_id, line in model_links], actor, run)


def _log_invoice_transitions(invoices: list[Invoice], drafts: Sequence[InvoiceDraft], actor: Any, reason: str) -> None:
    content_type = ContentType.objects.get_for_model(Invoice)
    now = timezone.now()
    actor_id = getattr(actor, "pk", None)
    rows = []
    for invoice, draft in zip(invoices, drafts, strict=True):
        codes = ", ".join(sorted(draft.blocking_codes))
        rows.append(
            (
                now,
                actor_id,
                Invoice.Status.DRAFT,
                invoice.status,
                "flag_exception" if draft.is_blocked else "submit_for_approval",
                content_type.pk,
                invoice.pk,
                f"{reason}: blocked by {codes}" if codes else f"{reason}: validated",
            )
        )
    _create_state_logs(rows)


def link_items(model, pairs: list[tuple[int, int]], actor: Any, run: BillingRun | None) -> None:
    """Compare-and-set link of approved items to their lines, with one `mark_invoiced` log row each.

    Any miss aborts the chunk. On PostgreSQL the log rows are written by the linking statement
    itself, from the rows it updated, in the order of `pairs` (`_link_postgresql`).
    """
    if not pairs:
        return
    log = _LinkLog(
        timestamp=timezone.now(),
        by_id=getattr(actor, "pk", None),
        content_type_id=ContentType.objects.get_for_model(model).pk,
        description=f"Billed by run {run.pk}" if run else "Billed on revalidation",
    )
    linked = _link_postgresql(model, pairs, log) if copy_supported() else _link_portable(model, pairs)
    if linked != len(pairs):
        raise ConflictError(
            f"{len(pairs) - linked} {model._meta.verbose_name_plural} were billed by another run at the same "
            "moment; nothing of this chunk was saved. Run again."
        )
    if not copy_supported():
        _create_state_logs([log.row(model, item_id, line_id) for item_id, line_id in pairs])


@dataclass(frozen=True)
class _LinkLog:
    """The `StateLog` row of each linked item: approved → invoiced by `mark_invoiced`, naming its line."""

    timestamp: datetime
    by_id: int | None
    content_type_id: int
    description: str

    def row(self, model, item_id: int, line_id: int) -> tuple:
        """The row's values in `_STATE_LOG_FIELDS` order."""
        return (
            self.timestamp,
            self.by_id,
            model.Status.APPROVED,
            model.Status.INVOICED,
            "mark_invoiced",
            self.content_type_id,
            item_id,
            f"{self.description} (invoice line {line_id})",
        )


_STATE_LOG_FIELDS = (
    "timestamp",
    "by_id",
    "source_state",
    "state",
    "transition",
    "content_type_id",
    "object_id",
    "description",
)


def _create_state_logs(rows: list[tuple]) -> None:
    """StateLog rows (values in `_STATE_LOG_FIELDS` order): COPY on PostgreSQL, else bulk_create.

    A run writes one per billed item (250k for a large month); COPY skips building a
    model instance and an INSERT parameter per value, and writes exactly the same rows.
    """
    if not rows:
        return
    if not copy_supported():
        StateLog.objects.bulk_create(
            [StateLog(**dict(zip(_STATE_LOG_FIELDS, row, strict=True))) for row in rows], batch_size=5000
        )
        return
    column = {field.attname: field.column for field in StateLog._meta.concrete_fields}
    copy_rows(StateLog._meta.db_table, [column[name] for name in _STATE_LOG_FIELDS], rows)


def _link_postgresql(model, pairs: list[tuple[int, int]], log: _LinkLog) -> int:
    """One statement per batch: UPDATE … FROM unnest(ids, line ids), and INSERT of the log rows it linked.

    The ids travel as two array literals (two parameters, not two per item), so a batch can be
    large: one statement, one plan, one pass per chunk. The items are fetched by primary key
    (nested loop): a chunk's items are few next to the table, which the planner's default hash
    join would scan whole, once per chunk, a cost that grows with the table's history; the
    setting is local to the statements. The `StateLog` rows (`_LinkLog.row`, the same values)
    are inserted from the UPDATE's RETURNING, in the order of `pairs` (their ids as a COPY in
    that order would draw them): nothing per item travels back to Python. Returns the rows
    linked; a miss rolls the chunk back, log rows included.
    """
    table = connection.ops.quote_name(model._meta.db_table)
    state_log = StateLog._meta
    column = {field.attname: connection.ops.quote_name(field.column) for field in state_log.concrete_fields}
    columns = ", ".join(column[name] for name in _STATE_LOG_FIELDS)
    statement = (
        f"WITH linked AS (UPDATE {table} AS item SET invoice_line_id = links.line_id, status = %(invoiced)s "  # noqa: S608
        "FROM unnest(%(items)s::bigint[], %(lines)s::bigint[]) WITH ORDINALITY AS links(item_id, line_id, position) "
        "WHERE item.id = links.item_id AND item.invoice_line_id IS NULL AND item.status = %(approved)s "
        "RETURNING links.item_id, links.line_id, links.position) "
        f"INSERT INTO {connection.ops.quote_name(state_log.db_table)} ({columns}) "
        "SELECT %(timestamp)s::timestamptz, %(by_id)s::bigint, %(approved)s, %(invoiced)s, 'mark_invoiced', "
        "%(content_type_id)s::bigint, linked.item_id, "
        "%(description)s::text || ' (invoice line ' || linked.line_id::text || ')' "
        "FROM linked ORDER BY linked.position"
    )
    linked = 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'), "
            "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
        )
        hashjoin, mergejoin = cursor.fetchone()[:2]
        for offset in range(0, len(pairs), LINK_BATCH):
            batch = pairs[offset : offset + LINK_BATCH]
            cursor.execute(
                statement,
                {
                    "invoiced": model.Status.INVOICED,
                    "approved": model.Status.APPROVED,
                    "items": "{" + ",".join(str(item_id) for item_id, _ in batch) + "}",
                    "lines": "{" + ",".join(str(line_id) for _, line_id in batch) + "}",
                    "timestamp": log.timestamp,
                    "by_id": log.by_id,
                    "content_type_id": log.content_type_id,
                    "description": log.description,
                },
            )
            linked += cursor.rowcount
        cursor.execute(
            "SELECT set_config('enable_hashjoin', %s, true), set_config('enable_mergejoin', %s, true)",
            [hashjoin, mergejoin],
        )
    return linked


def _link_portable(model, pairs: list[tuple[int, int]]) -> int:
    """The same compare-and-set, one UPDATE per line (SQLite demo databases)."""
    by_line: dict[int, list[int]] = defaultdict(list)
    for item_id, line_id in pairs:
        by_line[line_id].append(item_id)
    return sum(
        model.objects.filter(id__in=item_ids, invoice_line__isnull=True, status=model.Status.APPROVED).update(
            invoice_line_id=line_id, status=model.Status.INVOICED
        )
        for line_id, item_ids in by_line.items()
    )
