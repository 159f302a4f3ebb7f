"""What the engine needs to know about an approvable subject, loaded in bulk.

Every approvable subject is reduced to `SubjectFacts`: its type, whether it is
waiting for approval, its amount in the entity's currency, its
entity/client/contract/project, open warnings, cap growth, who is barred by
segregation of duties, and its PMs. The engine knows subjects only through
their handlers (`approvals.registry`), which the owning app registers at
start-up; `collect_facts` loads the facts of any number of subjects in a
bounded number of queries (one bulk loader call per group of handlers), so a
billing run can open thousands of requests at once.

The subject's own service applies the outcome, called through its handler
(`apply_approval`, `apply_rejection`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from typing import Any

from django.db import models
from django.utils import timezone

from approvals.registry import SubjectFacts, handler_for, is_registered, registered_models, subject_label
from kernel.errors import ApplicationError

__all__ = [
    "apply_approval",
    "apply_approval_many",
    "apply_rejection",
    "awaiting_status",
    "collect_facts",
    "display_subjects",
    "engine_is_applying",
    "is_awaiting",
    "load_subject",
    "lock_subject",
    "preparer_id",
    "preparer_phrase",
    "subject_model",
    "subject_prefetch",
    "subject_type_of",
]


def awaiting_status(model: type[models.Model]) -> str:
    """The state a subject of `model` is in while it waits for approval."""
    return handler_for(model).awaiting_status


def is_awaiting(subject: Any) -> bool:
    """Whether the subject is in the state in which it waits for approval."""
    return is_registered(type(subject)) and handler_for(subject).awaiting_status == subject.status


def subject_type_of(subject: Any) -> str:
    return handler_for(subject).type_of(subject)


def preparer_id(subject: Any) -> int | None:
    """Who may never approve the subject: preparer, owner, completer or submitter."""
    return handler_for(subject).preparer_id(subject) if is_registered(type(subject)) else None


def preparer_phrase(subject: Any, *, name: str | None = None) -> str:
    """The segregation-of-duties reason: 'You prepared invoice DRAFT-3' (no name) or 'Ann prepared …'."""
    if not is_registered(type(subject)):
        return f"{name or 'You'} prepared {subject_label(subject)}"
    return handler_for(subject).preparer_phrase(subject, name=name)


def subject_model(content_type_id: int) -> type[models.Model]:
    from django.contrib.contenttypes.models import ContentType

    model = ContentType.objects.get_for_id(content_type_id).model_class()
    if model is None or not is_registered(model):
        raise ApplicationError(f"{model} is not an approvable subject.", code="not_approvable")
    return model


def lock_subject(model: type[models.Model], pk: int) -> Any:
    """Re-read a subject under a row lock (the same row its own service locks)."""
    related = handler_for(model).related
    try:
        return model._default_manager.select_for_update(of=("self",)).select_related(*related).get(pk=pk)
    except model.DoesNotExist as exc:
        raise ApplicationError(
            f"The {model._meta.verbose_name} {pk} of this approval no longer exists.", code="not_found"
        ) from exc


# --- bulk loading -------------------------------------------------------------------------------


def _reload(subjects: Sequence[Any]) -> list[Any]:
    """The subjects fresh from the database with what the facts need, one query per model."""
    by_model: dict[type[models.Model], list[int]] = defaultdict(list)
    for subject in subjects:
        handler_for(subject)  # raises the not-approvable error
        by_model[type(subject)].append(subject.pk)
    fresh: dict[tuple[type[models.Model], int], Any] = {}
    for model, pks in by_model.items():
        for row in model._default_manager.select_related(*handler_for(model).related).filter(pk__in=pks):
            fresh[(model, row.pk)] = row
    missing = [s for s in subjects if (type(s), s.pk) not in fresh]
    if missing:
        raise ApplicationError(f"Not found: {', '.join(subject_label(s) for s in missing[:10])}.", code="not_found")
    return [fresh[(type(s), s.pk)] for s in subjects]


def collect_facts(subjects: Sequence[Any], *, today: date | None = None) -> list[SubjectFacts]:
    """Facts of every subject, in order, in a bounded number of queries (≈ models + loaders' own)."""
    if not subjects:
        return []
    today = today or timezone.localdate()
    rows = _reload(subjects)
    facts: list[SubjectFacts | None] = [None] * len(rows)
    groups: dict[Any, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        handler = handler_for(row)
        if handler.facts_loader is None:
            facts[index] = handler.default_facts(row)
        else:
            groups[handler.facts_loader].append(index)
    for loader, indexes in groups.items():
        for index, loaded in zip(indexes, loader([rows[i] for i in indexes], today), strict=True):
            facts[index] = loaded
    return [f for f in facts if f is not None]


# --- outcomes, through the subject's own service ----------------------------------------------------


_applying: ContextVar[frozenset[tuple[type, int]]] = ContextVar("approvals_applying", default=frozenset())


@contextmanager
def _engine_applying(*subjects: Any) -> Iterator[None]:
    token = _applying.set(frozenset((type(subject), subject.pk) for subject in subjects))
    try:
        yield
    finally:
        _applying.reset(token)


def engine_is_applying(subject: Any) -> bool:
    """True while the engine applies a settled request's outcome to `subject` (its service's callback)."""
    return (type(subject), subject.pk) in _applying.get()


def apply_approval(subject: Any, *, user: Any, comment: str = "") -> None:
    """Run the subject's approval effect (numbering, billing eligibility, amendment)."""
    with _engine_applying(subject):
        _apply_approval(subject, user=user, comment=comment)


def _apply_approval(subject: Any, *, user: Any, comment: str = "") -> None:
    handler_for(subject).apply_approved(subject, user=user, comment=comment)


def apply_approval_many(
    subjects: Sequence[Any], *, user: Any, comment: str = "", roles: frozenset[str] | None = None
) -> None:
    """Run the approval effect of many subjects, one handler call per model (`apply_approved_many`).

    `roles`: the user's roles the engine read in this transaction, handed on so they are read once.
    """
    by_model: dict[type[models.Model], list[Any]] = defaultdict(list)
    for subject in subjects:
        by_model[type(subject)].append(subject)
    for model, group in by_model.items():
        with _engine_applying(*group):
            handler_for(model).apply_approved_many(group, user=user, comment=comment, roles=roles)


def apply_rejection(subject: Any, *, user: Any, reason: str) -> bool:
    """Send the subject back with the reason; False when it has no way back (milestones)."""
    with _engine_applying(subject):
        return _apply_rejection(subject, user=user, reason=reason)


def _apply_rejection(subject: Any, *, user: Any, reason: str) -> bool:
    return handler_for(subject).apply_rejected(subject, user=user, reason=reason)


def subject_prefetch(to_attr: str | None = None) -> Any:
    """Prefetch requests' subjects, one query per subject model, each ready for `str()`."""
    from django.contrib.contenttypes.prefetch import GenericPrefetch

    querysets = [
        model._default_manager.select_related(*handler_for(model).display_related) for model in registered_models()
    ]
    return GenericPrefetch("subject", querysets, to_attr=to_attr)


def display_subjects(keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Any]:
    """Subjects by (content type id, pk), each with only the fields its handler displays; one query per model.

    For queue rows: a page of requests reads a handful of columns of its subjects, not every column
    of every invoice and contract. A subject that is gone (or no longer approvable) is absent.
    """
    from django.contrib.contenttypes.models import ContentType

    by_type: dict[int, list[int]] = defaultdict(list)
    for content_type_id, pk in keys:
        by_type[content_type_id].append(pk)
    found: dict[tuple[int, int], Any] = {}
    for content_type_id, pks in by_type.items():
        model = ContentType.objects.get_for_id(content_type_id).model_class()
        if model is None or not is_registered(model):
            continue
        handler = handler_for(model)
        qs = model._default_manager.filter(pk__in=pks).order_by()
        if handler.display_fields:
            related = {path.rsplit("__", 1)[0] for path in handler.display_fields if "__" in path}
            qs = qs.select_related(*related).only(*handler.display_fields)
        else:
            qs = qs.select_related(*handler.display_related)
        for subject in qs:
            found[(content_type_id, subject.pk)] = subject
    return found


def load_subject(content_type_id: int, object_id: int) -> Any:
    """One request's subject, whole, with the relations its summary shows (`display_fields`); None when gone."""
    from django.contrib.contenttypes.models import ContentType

    model = ContentType.objects.get_for_id(content_type_id).model_class()
    if model is None:
        return None
    qs = model._default_manager.all()
    if is_registered(model):
        handler = handler_for(model)
        shown = {path.rsplit("__", 1)[0] for path in handler.display_fields if "__" in path}
        qs = qs.select_related(*(shown if handler.display_fields else handler.display_related))
    return qs.filter(pk=object_id).first()
