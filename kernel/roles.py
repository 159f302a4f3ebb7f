"""Roles are Django groups; this module names them and says what each may touch.

Model permissions (add/change/view) gate admin and API lists; who may act on a
*particular* object (approve this time entry, this milestone) is decided by the
predicates in `billing.rules` and enforced again by the services.

`ROLE_GRANTS` is the single source of the groups' model permissions: the
`portal.0001_roles` migration applies it for the models that exist at that
point; `sync_roles_after_migrate` (a post_migrate receiver) re-applies it after
every migrate so models added later are covered. It only ever adds permissions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS

from kernel.errors import PermissionDeniedError

if TYPE_CHECKING:
    from django.db.models import QuerySet

CONSULTANT = "consultant"
PROJECT_MANAGER = "project_manager"
FINANCE_ANALYST = "finance_analyst"
FINANCE_CONTROLLER = "finance_controller"
COLLECTIONS = "collections"
BILLING_ADMIN = "billing_admin"
AUDITOR = "auditor"

ALL_ROLES: tuple[str, ...] = (
    CONSULTANT,
    PROJECT_MANAGER,
    FINANCE_ANALYST,
    FINANCE_CONTROLLER,
    COLLECTIONS,
    BILLING_ADMIN,
    AUDITOR,
)
FINANCE_ROLES = frozenset({FINANCE_ANALYST, FINANCE_CONTROLLER})

VIEW = ("view",)
ADD_CHANGE_VIEW = ("add", "change", "view")
CHANGE_VIEW = ("change", "view")

MASTER_DATA = (
    "legalentity", "client", "role", "person", "ratecard", "ratecardline", "taxrule", "fxrate", "purchaseorder",
)
CONTRACT_DATA = ("contract", "contractrate", "changeorder", "changeorderrate", "changeordermilestone", "project")
WORK = ("timeentry", "expense", "milestone")
INVOICING = ("invoice", "invoiceline", "invoicetax", "invoiceexception", "payment", "billingrun")

# role -> [(app_label pattern, model pattern, actions)]; patterns are fnmatch-style.
# No role gets `delete_*`: financial records are corrected, never deleted.
_CONSULTANT_GRANTS = [
    ("billing", "timeentry", ADD_CHANGE_VIEW),
    ("billing", "expense", ADD_CHANGE_VIEW),
    *[("billing", m, VIEW) for m in ("project", "milestone", "person", "role")],
]
_FINANCE_GRANTS = [
    ("billing", "*", VIEW),
    *[("billing", m, ADD_CHANGE_VIEW) for m in INVOICING],
    ("billing", "purchaseorder", ADD_CHANGE_VIEW),  # finance keeps the client's POs current (ADR 0068)
    ("approvals", "*", VIEW),
    ("disputes", "*", ADD_CHANGE_VIEW),
    ("integrations", "*", VIEW),
    ("integrations", "outbox*", CHANGE_VIEW),  # finance retries the dead-letter queue
    ("insights", "*", VIEW),
    ("insights", "sowsuggestion", CHANGE_VIEW),  # finance accepts or rejects SOW suggestions
    ("django_fsm_log", "*", VIEW),
]

ROLE_GRANTS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    CONSULTANT: _CONSULTANT_GRANTS,
    PROJECT_MANAGER: [
        *_CONSULTANT_GRANTS,
        *[("billing", m, VIEW) for m in ("client", "contract", "contractrate", "ratecard", "ratecardline")],
        *[("billing", m, ADD_CHANGE_VIEW) for m in ("changeorder", "changeorderrate", "changeordermilestone")],
        ("billing", "milestone", CHANGE_VIEW),
        ("billing", "project", CHANGE_VIEW),
        ("billing", "invoice", VIEW),
        ("billing", "invoiceline", VIEW),
        ("approvals", "*", VIEW),
    ],
    FINANCE_ANALYST: _FINANCE_GRANTS,
    # Controllers act on approval requests in admin (actions need `change`) and may set up a delegation for an
    # absent colleague; they never edit the policies that route their own approvals (billing admins do).
    FINANCE_CONTROLLER: [
        *_FINANCE_GRANTS,
        ("approvals", "approvalrequest", CHANGE_VIEW),
        ("approvals", "delegation", CHANGE_VIEW),
    ],
    COLLECTIONS: [
        *[("billing", m, VIEW) for m in ("client", "contract", "project", "invoice", "invoiceline", "invoicetax")],
        ("billing", "payment", VIEW),
        ("disputes", "*", ADD_CHANGE_VIEW),
        ("insights", "*", VIEW),
    ],
    BILLING_ADMIN: [
        ("billing", "*", VIEW),
        *[("billing", m, ADD_CHANGE_VIEW) for m in (*MASTER_DATA, *CONTRACT_DATA)],
        ("approvals", "approvalpolicy*", ADD_CHANGE_VIEW),
        ("approvals", "*step", ADD_CHANGE_VIEW),
        ("approvals", "*", VIEW),
        ("integrations", "erp*mapping", ADD_CHANGE_VIEW),  # which ERP company and taxes an entity posts to
    ],
    # Auditors read everything, including history and transition logs, and change nothing.
    AUDITOR: [("*", "*", VIEW)],
}


_roles_read: ContextVar[dict[int, frozenset[str]] | None] = ContextVar("kernel_roles_read", default=None)


@contextmanager
def roles_read_once() -> Iterator[None]:
    """Inside one use case's transaction, each user's roles are read once, by the first check that asks.

    An approval decision checks the decider's roles under its row locks, then the subject's own
    service, called back in the same transaction, checks them again: both checks run, on one read.
    Wrap one service call only; the memo ends with it, so every decision reads roles afresh.
    """
    token = _roles_read.set({})
    try:
        yield
    finally:
        _roles_read.reset(token)


def user_roles(user: Any) -> set[str]:
    """The Billable roles (group names) of `user`; empty for anonymous or inactive users."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return set()
    memo = _roles_read.get()
    if memo is not None and user.pk in memo:
        return set(memo[user.pk])
    roles = set(roles_query(user))
    remember_roles(user, roles)
    return roles


def roles_query(user: Any) -> QuerySet:
    """The unevaluated query of `user`'s role names, for a service that reads them with another fact at once."""
    return user.groups.filter(name__in=ALL_ROLES).order_by().values_list("name", flat=True)


def remember_roles(user: Any, roles: Iterable[str]) -> None:
    """Roles a service has just read itself (`roles_query`) serve the rest of `roles_read_once`; else nothing."""
    memo = _roles_read.get()
    if memo is not None:
        memo[user.pk] = frozenset(roles)


ROLE_LABELS = {
    CONSULTANT: "Consultant",
    PROJECT_MANAGER: "Project manager",
    FINANCE_ANALYST: "Finance analyst",
    FINANCE_CONTROLLER: "Finance controller",
    COLLECTIONS: "Collections",
    BILLING_ADMIN: "Billing admin",
    AUDITOR: "Auditor",
}

_ROLES_ATTR = "_portal_roles"


def cached_user_roles(user: Any) -> frozenset[str]:
    """`user_roles` for a request's user: one query, memoised on the user object (screens ask often)."""
    if user is None:
        return frozenset()
    cached = getattr(user, _ROLES_ATTR, None)
    if cached is None:
        cached = frozenset(user_roles(user))
        setattr(user, _ROLES_ATTR, cached)
    return cached


def is_auditor(user: Any) -> bool:
    return AUDITOR in cached_user_roles(user)


def is_finance(user: Any) -> bool:
    """A finance analyst or controller (or a superuser): who prepares, approves and corrects invoices."""
    return bool(getattr(user, "is_superuser", False)) or has_any_role(user, FINANCE_ROLES)


def require_finance(user: Any, message: str) -> None:
    """Refuse anyone but finance (`is_finance`) with `message`."""
    if not is_finance(user):
        raise PermissionDeniedError(message)


def has_role(user: Any, role: str) -> bool:
    return role in user_roles(user)


def has_any_role(user: Any, roles: Iterable[str]) -> bool:
    return bool(user_roles(user) & set(roles))


def _matches(grants: list[tuple[str, str, tuple[str, ...]]], app_label: str, model: str, action: str) -> bool:
    return any(
        fnmatchcase(app_label, app_pat) and fnmatchcase(model, model_pat) and action in actions
        for app_pat, model_pat, actions in grants
    )


def sync_role_permissions(*, apps: Any = None, using: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Create the role groups and grant them `ROLE_GRANTS`; additive and idempotent.

    Works with the global app registry or a migration's historical `apps`.
    Returns how many permissions each group holds afterwards.
    """
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = list(
        Permission.objects.using(using)
        .select_related("content_type")
        .only("id", "codename", "content_type__app_label", "content_type__model")
    )
    counts: dict[str, int] = {}
    for role in ALL_ROLES:
        group, _ = Group.objects.using(using).get_or_create(name=role)
        grants = ROLE_GRANTS[role]
        wanted = []
        for perm in permissions:
            action, _, model = perm.codename.partition("_")
            if model != perm.content_type.model:
                continue  # custom permissions are granted explicitly, not by pattern
            if _matches(grants, perm.content_type.app_label, model, action):
                wanted.append(perm.pk)
        group.permissions.add(*wanted)
        counts[role] = group.permissions.count()
    return counts


def sync_roles_after_migrate(sender: Any, *, apps: Any = None, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate receiver: grant the roles the permissions of apps migrated after portal.0001.

    Django emits post_migrate once per app, in INSTALLED_APPS order, and creates
    each app's permissions in its own call; acting on the last app's signal sees
    them all. Connect it in `PortalConfig.ready()`:
    `post_migrate.connect(sync_roles_after_migrate, dispatch_uid="portal.sync_roles")`.
    """
    from django.apps import apps as global_apps

    # post_migrate is sent only for apps with a models module: act on the last of those.
    with_models = [config for config in global_apps.get_app_configs() if config.models_module is not None]
    if sender is not None and sender.label != with_models[-1].label:
        return
    sync_role_permissions(apps=apps or global_apps, using=using)
