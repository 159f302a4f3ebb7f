"""The approvable subjects the engine knows, each through a handler registered at start-up.

The engine never imports the apps whose objects it approves. An app that has
approvable objects (billing: invoices, credit notes, time entries, expenses,
milestones, change orders) describes each model with a `SubjectHandler` and
registers it from its `AppConfig.ready()`:

    register_subject(MyModel, MyHandler())

Adding a kind of subject is then the handler and that one call (plus its
approval policies); nothing in `approvals` changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from kernel.errors import ApplicationError


@dataclass
class SubjectFacts:
    """A subject as the policy matcher and the router see it."""

    subject: Any
    subject_type: str
    awaiting: bool
    amount: Decimal | None = None
    currency: str = ""
    #: In the entity's currency; None with `amount_unconvertible` = no FX rate (highest band).
    entity_amount: Decimal | None = None
    amount_unconvertible: bool = False
    entity_id: int | None = None
    client_id: int | None = None
    contract_id: int | None = None
    project_id: int | None = None
    billing_model: str = ""
    warnings: frozenset[str] = frozenset()
    cap_growth_pct: Decimal | None = None
    prepared_by_id: int | None = None
    pm_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        return subject_label(self.subject)


#: Loads the facts of many subjects (already reloaded with the handler's `related`) in bulk,
#: in order; handlers that share a loader are loaded together in one call.
FactsLoader = Callable[[Sequence[Any], date], list[SubjectFacts]]


class SubjectHandler:
    """What the engine needs to know about one model of approvable subject.

    Override what differs; the defaults suit a subject without amount or scope.
    """

    #: The policy subject type of this model's subjects (a value of `subject_type_choices()`).
    subject_type: str = ""
    #: Every (value, label) this handler's subjects may carry as a subject type (policies and requests
    #: offer them); empty: just `subject_type`, labelled from its value.
    subject_types: tuple[tuple[str, str], ...] = ()
    #: The status in which a subject waits for approval.
    awaiting_status: str = ""
    #: `select_related` paths the facts and the outcome need (used when locking and reloading).
    related: tuple[str, ...] = ()
    #: `select_related` paths that make `str(subject)` free of queries (queues, e-mails).
    display_related: tuple[str, ...] = ()
    #: The fields a queue row shows of a subject and its label needs (`only()` paths; `a__b` follows a relation):
    #: the queue then reads a few columns instead of whole rows. Empty: every field, with `display_related`.
    display_fields: tuple[str, ...] = ()
    #: Bulk loader of the facts; None: `default_facts` one by one (no extra query).
    facts_loader: FactsLoader | None = None

    def type_of(self, subject: Any) -> str:
        """The policy subject type of this subject (a model may carry two, e.g. invoice/credit note)."""
        return self.subject_type

    def label(self, subject: Any) -> str:
        """How messages name the subject: 'invoice DRAFT-12', 'time entry 5'."""
        return str(subject)

    def preparer_id(self, subject: Any) -> int | None:
        """The user who may never approve the subject (preparer, owner, submitter)."""
        return None

    def preparer_phrase(self, subject: Any, *, name: str | None) -> str:
        """The segregation-of-duties reason: 'You prepared invoice DRAFT-3' (no name) or 'Ann prepared …'."""
        return f"{name or 'You'} prepared {self.label(subject)}"

    def default_facts(self, subject: Any) -> SubjectFacts:
        return SubjectFacts(
            subject=subject,
            subject_type=self.type_of(subject),
            awaiting=subject.status == self.awaiting_status,
            prepared_by_id=self.preparer_id(subject),
        )

    def apply_approved(self, subject: Any, *, user: Any, comment: str) -> None:
        """Apply a settled approval through the subject's own service."""
        raise NotImplementedError

    def apply_rejected(self, subject: Any, *, user: Any, reason: str) -> bool:
        """Apply a settled rejection; False when the subject has no way back (it stays as it is)."""
        return False

    def loaded_project_manager(self, subject: Any) -> tuple[int, int | None] | None:
        """(project id, its manager) when the subject was read (locked) with its project row; None: not known.

        Lets a bulk decision route "project manager" steps on what the lock query read, not read it again.
        """
        return None

    def apply_approved_many(
        self, subjects: Sequence[Any], *, user: Any, comment: str, roles: frozenset[str] | None = None
    ) -> None:
        """Apply many settled approvals (a bulk decision); override to do it set-based, in bounded queries.

        `roles`: the user's roles as the engine read them in this transaction (None: not read), so a
        set-based override need not read them again.
        """
        for subject in subjects:
            self.apply_approved(subject, user=user, comment=comment)


_HANDLERS: dict[type[models.Model], SubjectHandler] = {}


def register_subject(model: type[models.Model], handler: SubjectHandler) -> None:
    """Make `model` approvable (call from the owning app's `AppConfig.ready()`); idempotent per model."""
    _HANDLERS[model] = handler


def unregister_subject(model: type[models.Model]) -> None:
    """Forget a model (tests that register a subject of their own)."""
    _HANDLERS.pop(model, None)


def registered_models() -> tuple[type[models.Model], ...]:
    return tuple(_HANDLERS)


def is_registered(model: type[models.Model]) -> bool:
    return model in _HANDLERS


def handler_for(subject_or_model: Any) -> SubjectHandler:
    """The handler of a subject (or model); refuses anything that is not approvable."""
    model = subject_or_model if isinstance(subject_or_model, type) else type(subject_or_model)
    try:
        return _HANDLERS[model]
    except KeyError:
        raise ApplicationError(f"{model.__name__} is not an approvable subject.", code="not_approvable") from None


def subject_type_choices() -> list[tuple[str, str]]:
    """The subject types of the registered handlers, in registration order: the choices of
    `ApprovalPolicy.subject_type` and `ApprovalRequest.subject_type` (and the queue's filter)."""
    choices: dict[str, str] = {}
    for handler in _HANDLERS.values():
        types = handler.subject_types or ((handler.subject_type, handler.subject_type.replace("_", " ").capitalize()),)
        for value, label in types:
            choices.setdefault(value, label)
    return list(choices.items())


def subject_label(subject: Any) -> str:
    """How messages name the subject; `str()` for anything unregistered."""
    handler = _HANDLERS.get(type(subject))
    return handler.label(subject) if handler else str(subject)


# --- who manages a request's project or contract (the "project manager" approver step) -------------


class ProjectManagers:
    """How the engine finds the project managers of a request's project or contract.

    `ApprovalRequest.project` / `.contract` point at the models of the app that owns projects
    (billing); that app registers one of these from its `AppConfig.ready()`, so routing, the
    queue and the reminders never import it (ADR 0080).
    """

    def of_project(self, project_id: int) -> int | None:
        """The project's manager (None: nobody)."""
        raise NotImplementedError

    def of_projects(self, project_ids: Sequence[int] | set[int]) -> dict[int, int | None]:
        """Project id → its manager, in one query (bulk decisions)."""
        raise NotImplementedError

    def of_contracts(self, contract_ids: Sequence[int] | set[int]) -> dict[int, set[int]]:
        """Contract id → the managers of its projects, in one query."""
        raise NotImplementedError

    def manages_contract(self, principal_id: int) -> models.Exists:
        """An `Exists` true when `principal_id` manages a project of `OuterRef("contract_id")`."""
        raise NotImplementedError


_PROJECT_MANAGERS: list[ProjectManagers] = []


def register_project_managers(provider: ProjectManagers) -> None:
    """Tell the engine how to find project managers (call from `AppConfig.ready()`)."""
    _PROJECT_MANAGERS[:] = [provider]


def project_managers() -> ProjectManagers:
    if not _PROJECT_MANAGERS:
        raise ImproperlyConfigured("No project-manager provider is registered (approvals.registry).")
    return _PROJECT_MANAGERS[0]


# --- reminders other apps send through the engine's reminder mail ---------------------------------

#: `Reminder.Kind` → the job that sends that kind (returns its summary for the task log).
_REMINDERS: dict[str, Callable[[], dict[str, Any]]] = {}


def register_reminder(kind: str, job: Callable[[], dict[str, Any]]) -> None:
    """Let the engine's scheduled task for `kind` run `job` (call from `AppConfig.ready()`)."""
    _REMINDERS[kind] = job


def reminder_job(kind: str) -> Callable[[], dict[str, Any]]:
    try:
        return _REMINDERS[kind]
    except KeyError:
        raise ImproperlyConfigured(f"No reminder job is registered for {kind!r} (approvals.registry).") from None


# --- choices of the policies' conditions that belong to another app ----------------------------------

_CONDITION_CHOICES: dict[str, list[tuple[str, str]]] = {}


def register_condition_choices(condition: str, choices: Sequence[tuple[str, str]]) -> None:
    """Offer `choices` for a policy condition whose values another app defines (`billing_model`)."""
    _CONDITION_CHOICES[condition] = list(choices)


def billing_model_choices() -> list[tuple[str, str]]:
    """The choices of `ApprovalPolicy.billing_model` (registered by billing: the contracts' billing models)."""
    return list(_CONDITION_CHOICES.get("billing_model", ()))
