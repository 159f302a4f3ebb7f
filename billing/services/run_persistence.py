"""Persistence for billing runs: priced drafts become invoices, lines, taxes, exceptions, links and audit rows.

Writes only what the engine priced (`InvoiceDraft`s), inside the caller's transaction (a run's chunk,
a revalidation). Items are linked by a compare-and-set UPDATE whose row count must match, else the
transaction rolls back (never bill twice, ADR 0003). On PostgreSQL the many rows of a run (lines, their
history, one `StateLog` row per billed item) go by COPY with ids drawn from the tables' sequences:
the same rows `bulk_create` / `bulk_history_create` would write; other databases use those.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import partial
from operator import attrgetter
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.utils import timezone
from django_fsm_log.models import StateLog
from simple_history.utils import bulk_create_with_history

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
    invoices = _create_with_history(invoices, Invoice, actor=actor, reason=reason, batch_size=1000)
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
    new_line = _FastInstances(InvoiceLine)
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
    _create_with_history(lines, InvoiceLine, actor=actor, reason=reason, batch_size=2000)
    _create_with_history(taxes, InvoiceTax, actor=actor, reason=reason, batch_size=2000)
    InvoiceException.objects.bulk_create(exceptions, batch_size=2000)
    for model, model_links in links.items():
        link_items(model, [(item_id, line.pk) for item_id, line in model_links], actor, run)


class _FastInstances:
    """Unsaved instances of a model with the values `Model(**values)` would hold, built without `__init__`.

    A run builds one line per (project, role, rate, month) — tens of thousands — and only writes
    them: the descriptors and signals of `Model.__init__` are a large share of that Python.
    Values are given by attname (`invoice_id`); every other field holds its default, as it would.
    """

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.defaults = {f.attname: f.get_default() for f in model._meta.concrete_fields}

    def __call__(self, **values: Any) -> models.Model:
        obj = self.model.__new__(self.model)
        obj.__dict__.update(self.defaults)
        obj.__dict__.update(values)
        obj._state = models.base.ModelState()
        return obj


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
    """Compare-and-set link of approved items to their lines; any miss aborts the chunk."""
    if not pairs:
        return
    linked = _link_postgresql(model, pairs) if connection.vendor == "postgresql" else _link_portable(model, pairs)
    if linked != len(pairs):
        raise ConflictError(
            f"{len(pairs) - linked} {model._meta.verbose_name_plural} were billed by another run at the same "
            "moment; nothing of this chunk was saved. Run again."
        )
    content_type_id = ContentType.objects.get_for_model(model).pk
    now = timezone.now()
    actor_id = getattr(actor, "pk", None)
    description = f"Billed by run {run.pk}" if run else "Billed on revalidation"
    _create_state_logs(
        [
            (
                now,
                actor_id,
                model.Status.APPROVED,
                model.Status.INVOICED,
                "mark_invoiced",
                content_type_id,
                item_id,
                f"{description} (invoice line {line_id})",
            )
            for item_id, line_id in pairs
        ]
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
    if connection.vendor != "postgresql":
        StateLog.objects.bulk_create(
            [StateLog(**dict(zip(_STATE_LOG_FIELDS, row, strict=True))) for row in rows], batch_size=5000
        )
        return
    column = {field.attname: field.column for field in StateLog._meta.concrete_fields}
    columns = [column[name] for name in _STATE_LOG_FIELDS]
    with connection.cursor() as cursor:
        _copy(cursor, StateLog._meta.db_table, columns, rows)


def _copy(cursor, table: str, columns: list[str], rows: Iterable[Sequence]) -> None:
    """COPY rows into a table through Django's connection (PostgreSQL, psycopg 3), in its transaction."""
    qn = connection.ops.quote_name
    statement = f"COPY {qn(table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN"
    with cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _create_with_history(objs: list, model, *, actor: Any, reason: str, batch_size: int) -> list:
    """`bulk_create_with_history`; on PostgreSQL the same rows and "+" history rows by COPY.

    Ids are drawn from the table's own sequence first (as the INSERT would draw them)
    and set on the objects; values are those bulk_create sends (`pre_save` +
    `get_db_prep_save`, read straight from the attribute for plain types, where both
    return it unchanged); history rows get, like `bulk_history_create`, the tracked
    fields, `history_date` = now, the change reason and the default history user.
    """
    if connection.vendor != "postgresql":
        return bulk_create_with_history(
            objs, model, batch_size=batch_size, default_user=actor, default_change_reason=reason
        )
    if not objs:
        return objs
    meta = model._meta
    pk_field = meta.pk
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    getters = [attrgetter(f.attname) if isinstance(f, _PLAIN_FIELDS) else partial(_prepared_value, f) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, pk_field.column, len(objs)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        rows = []
        for obj, pk in zip(objs, ids, strict=True):
            rows.append([pk, *[get(obj) for get in getters]])
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = connection.alias
        _copy(cursor, meta.db_table, [pk_field.column, *[f.column for f in fields]], rows)

        history = model.history.model
        tracked = history.tracked_fields
        columns = [history._meta.get_field(f.name).column for f in tracked]
        columns += ["history_date", "history_change_reason", "history_type", "history_user_id"]
        names = [f.attname for f in tracked]
        tracked_values = attrgetter(*names) if len(names) > 1 else lambda obj: (getattr(obj, names[0]),)
        _copy(
            cursor,
            history._meta.db_table,
            columns,
            (
                [
                    *tracked_values(obj),
                    timezone.now(),
                    reason,
                    "+",
                    getattr(actor or history.get_default_history_user(obj), "pk", None),
                ]
                for obj in objs
            ),
        )
    return objs


# Fields whose `pre_save` + `get_db_prep_save` return the attribute unchanged on PostgreSQL.
_PLAIN_FIELDS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.DecimalField,
    models.BooleanField,
    models.ForeignKey,
)


def _prepared_value(field, obj):
    return field.get_db_prep_save(field.pre_save(obj, True), connection)


def _link_postgresql(model, pairs: list[tuple[int, int]]) -> int:
    """One UPDATE … FROM unnest(ids, line ids) per batch: set-based, as fast as the database allows.

    The ids travel as two array literals (two parameters, not two per item), so a
    batch can be large: one statement, one plan, one pass per chunk. The items are
    fetched by primary key (nested loop): a chunk's items are few next to the table,
    which the planner's default hash join would scan whole, once per chunk, a cost
    that grows with the table's history; the setting is local to the statements.
    """
    table = model._meta.db_table
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
                f"UPDATE {table} AS item SET invoice_line_id = links.line_id, status = %s "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[]) AS links(item_id, line_id) "
                "WHERE item.id = links.item_id AND item.invoice_line_id IS NULL AND item.status = %s",
                [
                    model.Status.INVOICED,
                    "{" + ",".join(str(item_id) for item_id, _ in batch) + "}",
                    "{" + ",".join(str(line_id) for _, line_id in batch) + "}",
                    model.Status.APPROVED,
                ],
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
