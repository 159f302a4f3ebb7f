"""Transition log rows written in bulk when a service decides many items at once.

django-fsm-log writes one `StateLog` row per FSM transition, as the transition
happens. `BufferedStateLogBackend` (settings `DJANGO_FSM_LOG_STORAGE_METHOD`) does
exactly that outside `buffered_state_logs()`; inside it, the rows are built the
same way (same actor, description, source/target state, transition name and
object) but kept, and inserted in one `bulk_create` when the block ends without
an error. A bulk decision of N items then costs one INSERT for its transition
log instead of N, with the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django_fsm_log.backends import SimpleBackend, _pre_transition_callback

_buffer: ContextVar[list[Any] | None] = ContextVar("kernel_state_log_buffer", default=None)


class _Collector:
    """Stands in for `StateLog.objects` in django-fsm-log's callback: builds the row, keeps it."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def create(self, **values: Any) -> Any:
        from django_fsm_log.models import StateLog

        row = StateLog(**values)
        self.rows.append(row)
        return row


class BufferedStateLogBackend(SimpleBackend):
    """django-fsm-log's simple backend, buffered while `buffered_state_logs()` is active."""

    @staticmethod
    def post_transition_callback(sender: Any, instance: Any, name: str, source: Any, target: Any, **kwargs: Any) -> Any:
        rows = _buffer.get()
        if rows is None:
            return SimpleBackend.post_transition_callback(sender, instance, name, source, target, **kwargs)
        return _pre_transition_callback(sender, instance, name, source, target, _Collector(rows), **kwargs)


@contextmanager
def buffered_state_logs() -> Iterator[list[Any]]:
    """Collect the transition log rows of the block; insert them together when it ends without error.

    Nested use joins the outer buffer (its rows are written when the outermost block ends).
    """
    if _buffer.get() is not None:
        yield _buffer.get()  # type: ignore[misc]
        return
    rows: list[Any] = []
    token = _buffer.set(rows)
    try:
        yield rows
    finally:
        _buffer.reset(token)
    if rows:
        from django_fsm_log.models import StateLog

        StateLog.objects.bulk_create(rows, batch_size=1000)
