"""Bulk inserts by COPY on PostgreSQL: the rows `bulk_create` / `bulk_create_with_history` would write.

A billing run writes tens of thousands of rows at once (lines, their history, approval
requests, scores, one transition log row per billed item). Django's `bulk_create` sends them
as one parameter per value (on PostgreSQL as arrays, bound in Python, quoted value by value);
COPY sends the rows as they are. Ids are drawn from each table's own sequence first, as the
INSERT would draw them, and set on the objects, in order. Other databases (the SQLite demo)
keep `bulk_create` / `bulk_create_with_history`: the same rows either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from functools import partial
from operator import attrgetter
from typing import Any, TypeVar

from django.db import connection, models
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

M = TypeVar("M", bound=models.Model)

# Fields whose `pre_save` + `get_db_prep_save` return the attribute unchanged on PostgreSQL.
_PLAIN_FIELDS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.DecimalField,
    models.BooleanField,
    models.ForeignKey,
)


def copy_supported() -> bool:
    """COPY is used on PostgreSQL (psycopg 3); elsewhere `bulk_create`."""
    return connection.vendor == "postgresql"


def copy_rows(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY rows into a table through Django's connection (PostgreSQL, psycopg 3), in its transaction.

    A constraint the rows break raises Django's `IntegrityError`, as an INSERT would.
    """
    qn = connection.ops.quote_name
    statement = f"COPY {qn(table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN"
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


class FastInstances:
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


def _prepared_value(field: models.Field, obj: models.Model) -> Any:
    return field.get_db_prep_save(field.pre_save(obj, True), connection)


def _saved_value(attname: str, field: models.Field, obj: models.Model) -> Any:
    """The object's (already saved) value as `field` of the history table sends it."""
    return field.get_db_prep_save(getattr(obj, attname), connection)


def _value_getter(field: models.Field, attname: str, slow: Callable[[models.Model], Any]) -> Callable[[Any], Any]:
    """How a row's value is read: the attribute itself where `slow` (`get_db_prep_save`) would return it unchanged.

    Plain types always; dates and aware datetimes (or None) as they are, checked per value (the
    database reads them as `get_db_prep_save` would send them); anything else through `slow`.
    """
    if isinstance(field, _PLAIN_FIELDS):
        return attrgetter(attname)
    if isinstance(field, models.DateTimeField):

        def datetime_value(obj: Any) -> Any:
            value = getattr(obj, attname)
            if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
                return value
            return slow(obj)

        return datetime_value
    if isinstance(field, models.DateField):

        def date_value(obj: Any) -> Any:
            value = getattr(obj, attname)
            if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
                return value
            return slow(obj)

        return date_value
    return slow


def _insert_getter(field: models.Field) -> Callable[[Any], Any]:
    """A column's value as bulk_create sends it: `pre_save` (auto_now stamps the object) + `get_db_prep_save`."""
    if isinstance(field, models.DateField) and (field.auto_now or field.auto_now_add):
        return partial(_prepared_value, field)
    return _value_getter(field, field.attname, partial(_prepared_value, field))


def _next_ids(table: str, column: str, count: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)", [table, column, count]
        )
        return [row[0] for row in cursor.fetchall()]


def copy_create(objs: list[M], model: type[M], *, batch_size: int | None = None) -> list[M]:
    """`model.objects.bulk_create(objs)` (no conflicts handling), on PostgreSQL by COPY; returns the objects.

    Values are those bulk_create sends (`pre_save` + `get_db_prep_save`, read straight from the
    attribute for plain types, where both return it unchanged); ids are drawn first and set.
    """
    if not copy_supported():
        return model._default_manager.bulk_create(objs, batch_size=batch_size)
    if not objs:
        return objs
    meta = model._meta
    pk_field = meta.pk
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    getters = [_insert_getter(f) for f in fields]
    ids = _next_ids(meta.db_table, pk_field.column, len(objs))
    rows = []
    for obj, pk in zip(objs, ids, strict=True):
        rows.append([pk, *[get(obj) for get in getters]])
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias
    copy_rows(meta.db_table, [pk_field.column, *[f.column for f in fields]], rows)
    return objs


def copy_create_with_history(objs: list[M], model: type[M], *, actor: Any, reason: str, batch_size: int) -> list[M]:
    """`bulk_create_with_history(objs, model, default_user=actor, default_change_reason=reason)`, by COPY.

    History rows get, like `bulk_history_create`, the tracked fields, `history_date` = now,
    the change reason and the history user (the object's `_history_user`, else `actor`, else
    the default history user).
    """
    if not copy_supported():
        return bulk_create_with_history(
            objs, model, batch_size=batch_size, default_user=actor, default_change_reason=reason
        )
    if not objs:
        return objs
    copy_create(objs, model)
    history = model.history.model
    tracked = history.tracked_fields
    columns = [history._meta.get_field(f.name).column for f in tracked]
    columns += ["history_date", "history_change_reason", "history_type", "history_user_id"]
    getters = [
        _value_getter(field, f.attname, partial(_saved_value, f.attname, field))
        for f, field in ((f, history._meta.get_field(f.name)) for f in tracked)
    ]
    default_user = _DefaultHistoryUser(history, actor)
    copy_rows(
        history._meta.db_table,
        columns,
        (
            [
                *[get(obj) for get in getters],
                timezone.now(),
                reason,
                "+",
                default_user(obj),
            ]
            for obj in objs
        ),
    )
    return objs


class _DefaultHistoryUser:
    """The history user `bulk_history_create` records: the object's `_history_user`, else the actor, else the default.

    The default (simple-history's: the current request's user, if any) is the same for every
    object of one call, so it is asked once.
    """

    def __init__(self, history: Any, actor: Any) -> None:
        self.history = history
        self.actor_id = getattr(actor, "pk", None) if actor else None
        self.has_actor = bool(actor)
        self.default_id: int | None = None
        self.asked = False

    def __call__(self, obj: Any) -> int | None:
        if "_history_user" in obj.__dict__:
            return getattr(obj._history_user, "pk", None)
        if self.has_actor:
            return self.actor_id
        if not self.asked:
            self.default_id = getattr(self.history.get_default_history_user(obj), "pk", None)
            self.asked = True
        return self.default_id
