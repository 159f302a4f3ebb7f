"""The permissions matrix (portal/permissions_matrix.py), checked against every URL of the portal.

1. Every named URL pattern the resolver knows (but Django admin's) is classified in
   the matrix, and the matrix names no pattern that is gone.
2. Every cell — (pattern, method, object) × role, and anonymous — is requested with
   Django's test client as a user of that one role, and the answer is classified
   (allow / refused / deny / login / method) and compared with the matrix.
3. docs/permissions.md is the matrix as rendered now.

The objects are made once for the module, with the factories and the real services
(a billing run, submitted work, completed milestones, submitted change orders,
delegations), inside a transaction rolled back when the module is done; each cell
runs in its own savepoint, so an action one cell takes never shows in another.
"""

from __future__ import annotations

import datetime
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import constants as message_levels
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.exceptions import Resolver404
from django.utils import timezone

from approvals.models import ApprovalRequest, Delegation
from approvals.services import delegation_create
from approvals.services.defaults import ensure_approval_defaults
from billing.models import BillingRun, ChangeOrder, Expense, Invoice, Milestone, Project, TimeEntry
from billing.services.billing_run import bill_period
from billing.services.change_orders import change_order_submit
from billing.services.documents import invoice_documents_render
from billing.services.invoices import invoice_approve
from billing.services.milestones import milestone_complete
from billing.services.work import expense_create, time_entry_create, work_submit
from kernel.roles import ALL_ROLES, FINANCE_ANALYST, PROJECT_MANAGER
from portal import permissions_matrix as pm
from portal.permissions_matrix import ANONYMOUS, COLUMNS, MATRIX, Outcome, Rule
from tests.factories import (
    DEFAULT_PASSWORD,
    ChangeOrderFactory,
    ContractFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "permissions.md"
START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)
WORK_DAY, SUBMITTED_DAY = datetime.date(2025, 3, 10), datetime.date(2025, 3, 12)
WEEK = "2025-W11"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
REASON = "Permissions matrix check"
NEW_PASSWORD = "Matrix-new-secret-42"
ROUTE_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
# The password-change cells check and set a password: a cheap hasher keeps them fast.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]


# =====================================================================================================
# The URL patterns of the portal
# =====================================================================================================


def url_patterns() -> dict[str, str]:
    """Every named URL pattern → its route, walking the resolver with namespaces; Django admin's left out."""
    found: dict[str, str] = {}
    unnamed: list[str] = []

    def walk(patterns: list, namespace: tuple[str, ...], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = (*namespace, entry.namespace) if entry.namespace else namespace
                walk(entry.url_patterns, inner, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                if namespace[:1] in (("admin",), ("api",)):
                    # Django admin: guarded by model permissions (one row checks who gets in); the API
                    # authenticates integration clients by token and scope (tests/integrations), not roles.
                    continue
                if entry.name is None:
                    unnamed.append(prefix + str(entry.pattern))
                    continue
                found[":".join((*namespace, entry.name))] = prefix + str(entry.pattern)

    walk(get_resolver().url_patterns, (), "/")
    if unnamed:
        found.update({f"<unnamed {route}>": route for route in unnamed})
    return found


def test_every_url_pattern_is_in_the_matrix_and_nothing_else():
    portal = set(url_patterns())
    classified = pm.patterns() - {pm.ADMIN_CHECK}

    missing = sorted(portal - classified)
    gone = sorted(classified - portal)

    assert not missing, f"URL patterns without a row in portal/permissions_matrix.py (classify them): {missing}"
    assert not gone, f"The matrix names URL patterns that no longer exist: {gone}"
    assert reverse(pm.ADMIN_CHECK) == "/admin/"


def test_the_matrix_is_complete_per_pattern():
    """Each pattern is requested with GET; an action that refuses GET has POST rows; holes name real cells."""
    for pattern in sorted(pm.patterns()):
        rules = pm.rules_for(pattern)
        gets = [r for r in rules if r.method == "GET"]
        assert gets, f"{pattern}: no GET row"
        post_only = all(set(r.outcomes) == {Outcome.METHOD} for r in gets)
        if post_only:
            assert any(r.method == "POST" for r in rules), f"{pattern}: GET is refused (405) but no POST row"
        for rule in rules:
            if rule.method == "POST":
                assert pattern in BODIES, f"{pattern}: no POST body in this test (add one to BODIES)"
    keys = {r.key for r in MATRIX}
    for key, column in pm.KNOWN_HOLES:
        assert key in keys and column in COLUMNS, f"KNOWN_HOLES names no cell: {key!r}, {column!r}"


def test_docs_permissions_md_is_current():
    assert DOCS.exists(), "docs/permissions.md is missing: python -m portal.permissions_matrix > docs/permissions.md"
    assert DOCS.read_text(encoding="utf-8") == pm.render_markdown(), (
        "docs/permissions.md is stale: python -m portal.permissions_matrix > docs/permissions.md"
    )


# =====================================================================================================
# The objects the URLs are built for
# =====================================================================================================


@dataclass
class World:
    """One user per role (the columns) and the objects of `permissions_matrix.TARGETS`."""

    users: dict[str, AbstractBaseUser]
    sessions: dict[str, str]  # role → the session key of its user, logged in once for the module
    delegate: AbstractBaseUser  # a colleague outside the columns, to delegate to
    own_project: Project
    targets: dict[str, Any] = field(default_factory=dict)
    own_delegations: dict[str, Delegation] = field(default_factory=dict)

    def target(self, key: str, column: str) -> Any:
        if key == "dlg-own":
            return self.own_delegations.get(column, self.targets["dlg-other"])
        return self.targets.get(key)


def _pending_request(subject: Any) -> ApprovalRequest:
    return ApprovalRequest.objects.get(
        content_type=ContentType.objects.get_for_model(type(subject)),
        object_id=subject.pk,
        status=ApprovalRequest.Status.PENDING,
    )


def _receipt() -> SimpleUploadedFile:
    return SimpleUploadedFile("receipt.pdf", PDF, content_type="application/pdf")


def _submitted_time(person, project) -> TimeEntry:
    entry = time_entry_create(
        person=person, project=project, date=SUBMITTED_DAY, hours="4", description="Workshop", user=person.user
    )
    return work_submit(item=entry, user=person.user)


def _draft_expense(person, project) -> Expense:
    return expense_create(
        person=person, project=project, date=SUBMITTED_DAY, amount="42.00", currency="EUR", category="travel",
        description="Train", receipt=_receipt(), user=person.user,
    )


def _submitted_change_order(contract, by) -> ChangeOrder:
    return change_order_submit(change_order=ChangeOrderFactory(contract=contract), user=by)


def _log_in(users: dict[str, AbstractBaseUser]) -> dict[str, str]:
    """One session per user, made once: a login per cell would cost more than most of the requests."""
    sessions = {}
    for role, user in users.items():
        client = Client()
        client.force_login(user)
        sessions[role] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return sessions


def build_world() -> World:
    ensure_approval_defaults()
    consultant_role = RoleFactory(code="CONSULTANT")
    users = {
        role: UserFactory(username=f"matrix-{role}", groups=[role], is_staff=role in pm.STAFF_ROLES)
        for role in ALL_ROLES
    }
    for user in users.values():
        user.set_password(DEFAULT_PASSWORD)  # with FAST_HASHERS
        user.save(update_fields=["password"])
    me = PersonFactory(user=users["consultant"], role=consultant_role, name="Mia Matrix")
    their_pm = UserFactory(username="matrix-their-pm", groups=[PROJECT_MANAGER])
    them = PersonFactory(role=consultant_role, name="Theo Them")
    finance = UserFactory(username="matrix-finance", groups=[FINANCE_ANALYST])  # prepares, submits

    def tm_contract(code: str, **kwargs):
        contract = ContractFactory(code=code, **kwargs)
        RateCardLineFactory(rate_card=contract.rate_card, role=consultant_role, rate=Decimal("100.00"))
        return contract

    # A billing run over another PM's projects: invoices awaiting approval, over their cap, and approved.
    their_project = ProjectFactory(contract=tm_contract("C-MX-THEIRS"), project_manager=their_pm)
    for code, cap in (("C-MX-THEIRS", None), ("C-MX-CAPPED", Decimal("500.00")), ("C-MX-POSTED", None)):
        project = their_project if code == "C-MX-THEIRS" else ProjectFactory(
            contract=tm_contract(code, cap=cap), project_manager=their_pm
        )
        TimeEntryFactory(project=project, person=them, date=WORK_DAY, hours=Decimal("8.00"), status="approved")
    billing_run = bill_period(period_start=START, period_end=END, run_date=RUN_DATE, user=finance)
    assert billing_run.status == BillingRun.Status.DONE
    pending, blocked, posted = (
        Invoice.objects.get(contract__code=code) for code in ("C-MX-THEIRS", "C-MX-CAPPED", "C-MX-POSTED")
    )
    assert (pending.status, blocked.status) == (Invoice.Status.PENDING_APPROVAL, Invoice.Status.EXCEPTION)
    assert blocked.exceptions.filter(code="CAP_EXCEEDED").exists()
    approver = UserFactory(username="matrix-approver", groups=[FINANCE_ANALYST])  # finance prepared it
    posted = invoice_approve(invoice=posted, user=approver)
    assert posted.status == Invoice.Status.POSTED and posted.number
    invoice_documents_render(invoice=posted, user=approver)  # once: downloads then serve the stored bytes

    # The team of the columns: the consultant works on the PM's projects.
    own_project = ProjectFactory(contract=tm_contract("C-MX-OURS"), project_manager=users[PROJECT_MANAGER])
    own_fixed = ProjectFactory(contract=ContractFactory(code="C-MX-OURS-FF", fixed_fee=True),
                               project_manager=users[PROJECT_MANAGER])
    their_fixed = ProjectFactory(contract=ContractFactory(code="C-MX-THEIRS-FF", fixed_fee=True),
                                 project_manager=their_pm)

    own_time, their_time = _submitted_time(me, own_project), _submitted_time(them, their_project)
    own_milestone = MilestoneFactory(project=own_fixed)
    their_milestone = milestone_complete(
        milestone=MilestoneFactory(project=their_fixed), user=their_pm, evidence="Signed acceptance"
    )
    assert their_milestone.status == Milestone.Status.COMPLETED

    today = timezone.localdate()
    world = World(users=users, sessions=_log_in(users), delegate=finance, own_project=own_project)
    world.targets = {
        "run": billing_run,
        "inv-pending": pending,
        "inv-blocked": blocked,
        "inv-posted": posted,
        "exp-own": _draft_expense(me, own_project),
        "exp-other": _draft_expense(them, their_project),
        "time-own": own_time,
        "time-other": their_time,
        "prj-own": own_project,
        "prj-other": their_project,
        "ms-own": own_milestone,
        "ms-other": their_milestone,
        "co-own": _submitted_change_order(own_fixed.contract, finance),
        "co-other": _submitted_change_order(their_fixed.contract, finance),
        "req-own": _pending_request(own_time),
        "req-other": _pending_request(their_time),
        "dlg-other": delegation_create(
            delegator=their_pm, delegate=finance, starts_on=today, ends_on=today + datetime.timedelta(days=7),
            reason="Holiday", user=their_pm,
        ),
    }
    for hooks in WORLD_HOOKS:
        world.targets.update(hooks.build_targets(world))
    world.own_delegations = {
        role: delegation_create(
            delegator=user, delegate=their_pm, starts_on=today, ends_on=today + datetime.timedelta(days=7),
            reason="Holiday", user=user,
        )
        for role, user in users.items()
    }
    return world


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    """The objects, made once for the module in a transaction that is rolled back at its end."""
    media = tmp_path_factory.mktemp("matrix-media")
    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=str(media), PASSWORD_HASHERS=FAST_HASHERS),
        transaction.atomic(),
    ):
        yield build_world()
        transaction.set_rollback(True)


# =====================================================================================================
# Requests
# =====================================================================================================


def _expense_body(world: World, expense: Expense | None) -> dict:
    project = expense.project if expense is not None else world.own_project
    return {
        "project": project.pk, "date": SUBMITTED_DAY.isoformat(), "category": "travel", "amount": "12.50",
        "currency": "EUR", "description": "Taxi to the client", "billable": "on", "action": "save",
    }


def _delegation_body(world: World, _obj: Any) -> dict:
    today = timezone.localdate()
    return {
        "delegate": world.delegate.pk,
        "starts_on": (today + datetime.timedelta(days=30)).isoformat(),
        "ends_on": (today + datetime.timedelta(days=36)).isoformat(),
        "reason": "Holiday",
    }


_REASON_BODY = {"reason": REASON, "comment": REASON, "evidence": "Signed acceptance"}

#: pattern → a minimal, valid-looking POST body (world, the rule's object) → form data.
BODIES: dict[str, Any] = {
    "logout": lambda w, o: {},
    "mfa": lambda w, o: {"token": "000000"},  # a wrong code: the form answers, no one is locked out
    "password_change": lambda w, o: {
        "old_password": DEFAULT_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD
    },
    "billing:run_list": lambda w, o: {"period": "2025-03", "run_date": RUN_DATE.isoformat(), "contract_codes": ""},
    "billing:run_resume": lambda w, o: {},
    **{
        f"billing:invoice_{action}": lambda w, o: dict(_REASON_BODY)
        for action in ("revalidate", "override", "write_down", "approve", "reject", "cancel", "resend")
    },
    "approvals:timesheet": lambda w, o: {"week": WEEK, "action": "save"},
    "approvals:expense_new": lambda w, o: _expense_body(w, None),
    "approvals:expense_edit": _expense_body,
    "approvals:expense_submit": lambda w, o: {},
    "approvals:pm_time_approve_week": lambda w, o: {"time": [o.pk]},
    "approvals:pm_work_reject": lambda w, o: dict(_REASON_BODY),
    "approvals:pm_milestone_action": lambda w, o: dict(_REASON_BODY),
    "approvals:pm_change_order_action": lambda w, o: dict(_REASON_BODY),
    "approvals:request_decide": lambda w, o: {"decision": "approve", "step": o.current_step, "comment": REASON},
    "approvals:mine_decide": lambda w, o: {"decision": "approve", "request": [o.pk], "comment": REASON},
    "approvals:delegation": _delegation_body,
    "approvals:delegation_end": lambda w, o: {},
}

#: The `action` URL argument per object (milestones and change orders).
ACTIONS = {"ms-own": "complete", "ms-other": "approve", "co-own": "approve", "co-other": "approve"}


def _world_hooks() -> list:
    """`tests/portal/matrix/<name>.py` for each `portal/matrix/<name>.py` (a feature's own rows).

    Each has `build_targets(world) -> {target: object}`, and may have `BODIES` (as above), `ACTIONS`
    and `url_kwarg(param, obj, rule) -> value | None` for URL arguments other than pk/kind/action.
    """
    hooks = []
    for module in pm.EXTENSIONS:
        name = module.__name__.rsplit(".", 1)[-1]
        try:
            hooks.append(importlib.import_module(f"tests.portal.matrix.{name}"))
        except ModuleNotFoundError as error:
            if error.name != f"tests.portal.matrix.{name}":
                raise
    return hooks


WORLD_HOOKS = _world_hooks()
for _hooks in WORLD_HOOKS:
    BODIES.update(getattr(_hooks, "BODIES", {}))
    ACTIONS.update(getattr(_hooks, "ACTIONS", {}))


def _hook_url_kwarg(param: str, obj: Any, rule: Rule) -> Any:
    for hooks in WORLD_HOOKS:
        value = hooks.url_kwarg(param, obj, rule) if hasattr(hooks, "url_kwarg") else None
        if value is not None:
            return value
    raise AssertionError(f"{rule.pattern}: no value for URL argument {param!r}")


def request_for(world: World, rule: Rule, column: str, routes: dict[str, str]) -> tuple[str, dict | None]:
    """The URL (with query) and POST body of one cell."""
    obj = world.target(rule.target, column)
    params = ROUTE_PARAM.findall(routes[rule.pattern])
    kwargs: dict[str, Any] = {}
    for param in params:
        if param == "pk":
            kwargs["pk"] = obj.pk
        elif param == "kind":
            kwargs["kind"] = "time" if isinstance(obj, TimeEntry) else "expense"
        elif param == "action":
            kwargs["action"] = ACTIONS[rule.target]
        elif param in ("uidb64", "token"):
            kwargs[param] = {"uidb64": "MQ", "token": "set-password-not-valid"}[param]
        else:
            kwargs[param] = _hook_url_kwarg(param, obj, rule)
    url = reverse(rule.pattern, kwargs=kwargs)
    if rule.target.startswith("prj-"):
        by_contract = rule.pattern == "approvals:pm_change_orders"
        url += "?" + urlencode({"contract": obj.contract.code} if by_contract else {"project": obj.code})
    body = BODIES[rule.pattern](world, obj) if rule.method == "POST" else None
    return url, body


# =====================================================================================================
# Classifying answers
# =====================================================================================================


def _error_messages(response) -> list[str]:
    storage = getattr(response.wsgi_request, "_messages", None)
    return [str(m) for m in storage or [] if m.level >= message_levels.ERROR]


def classify(response, rule: Rule) -> tuple[str, str]:
    """(outcome, detail): what the server answered, in the matrix's words."""
    status = response.status_code
    if status == 405:
        return Outcome.METHOD, "405"
    if status == 403:
        return Outcome.DENY, "403"
    detail = str(status)
    if status in (301, 302, 303, 307, 308):
        location = urlsplit(response["Location"])
        detail = f"{status} → {response['Location']}"
        login_pages = {reverse("login"), reverse("admin:login"), reverse("customers:login")}
        if location.path in login_pages and "next" in parse_qs(location.query):
            return Outcome.LOGIN, detail
        try:
            match = resolve(location.path)
        except Resolver404:
            return "redirect outside the portal", detail
        if match.namespace == "admin" and rule.pattern != pm.ADMIN_CHECK:
            return "redirect to Django admin", detail
    elif status != 200:
        return f"HTTP {status}", detail
    errors = _error_messages(response)
    if errors:
        return Outcome.REFUSED, f"{detail}; error: {errors[0]}"
    return Outcome.ALLOW, detail


def _cells():
    for rule in MATRIX:
        for column in COLUMNS:
            marks = []
            hole = pm.KNOWN_HOLES.get((rule.key, column))
            if hole:
                reason = f"authorization hole: {hole}"
                marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
            yield pytest.param(rule, column, id=f"{rule.pattern}-{rule.method}-{rule.target}-{column}", marks=marks)


@pytest.fixture(scope="module")
def routes() -> dict[str, str]:
    return {**url_patterns(), pm.ADMIN_CHECK: "/admin/"}


@pytest.mark.parametrize(("rule", "column"), list(_cells()))
def test_cell(rule: Rule, column: str, world: World, routes: dict[str, str], client):
    expected = rule.outcome(column)
    url, body = request_for(world, rule, column, routes)
    if column != ANONYMOUS:
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[column]

    response = client.get(url) if rule.method == "GET" else client.post(url, body)
    got, detail = classify(response, rule)
    # Every answer of every page carries a Content-Security-Policy (django-csp; receipts set their own).
    assert response.has_header("Content-Security-Policy"), f"{rule.method} {url} as {column}: no CSP header"
    if response.streaming:  # a receipt: read to the end, so the client closes the file (and only the file)
        b"".join(response.streaming_content)

    assert got == expected, f"{rule.method} {url} as {column}: expected {expected}, got {got} ({detail})"
