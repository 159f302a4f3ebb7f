"""Shared pieces of the adversarial control suite (tests/controls/).

- `@pytest.mark.control("<id>")` names the control (a row of docs/controls.md) a test tries to get around;
  each collected test — each parametrised case — is one bypass attempt. At the end of a run the terminal
  summary prints the attempts per control and how many were blocked (the test passed) or got through (the
  test failed): "N bypass attempts by control, 0 succeed".
- `log_in(client, user)`: the one place tests of this suite sign a user in (MFA, when it comes, is
  satisfied here).
- `role_user(role)`: a user holding exactly one role, staff as the demo sets them up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from approvals.services.defaults import ensure_approval_defaults
from kernel.roles import ALL_ROLES
from portal.permissions_matrix import STAFF_ROLES
from tests.factories import UserFactory

#: control id → outcome → count, over the tests of this directory that ran in this session.
_TALLY: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


# --- the tally -------------------------------------------------------------------------------------


def _control_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("control")
    return marker.args[0] if marker and marker.args else None


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    """Name each attempt's control on its reports (at collection, so a skip at setup is counted too)."""
    for item in items:
        control = _control_of(item)
        if control is not None and ("control", control) not in item.user_properties:
            item.user_properties.append(("control", control))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    control = dict(report.user_properties).get("control")
    if control is None:
        return
    if report.when == "setup" and report.skipped:
        _TALLY[control]["skipped"] += 1
    elif report.when == "setup" and report.failed:
        _TALLY[control]["error"] += 1
    elif report.when == "call":
        _TALLY[control]["blocked" if report.passed else "bypassed"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TALLY:
        return
    write = terminalreporter.write_line
    terminalreporter.section("control bypass attempts (tests/controls)")
    write(f"{'control':<28}{'attempts':>9}{'blocked':>9}{'bypassed':>10}{'skipped':>9}{'error':>7}")
    totals: dict[str, int] = defaultdict(int)
    for control in sorted(_TALLY):
        counts = _TALLY[control]
        attempts = sum(counts.values())
        totals["attempts"] += attempts
        for key in ("blocked", "bypassed", "skipped", "error"):
            totals[key] += counts[key]
        write(f"{control:<28}{attempts:>9}{counts['blocked']:>9}{counts['bypassed']:>10}"
              f"{counts['skipped']:>9}{counts['error']:>7}")
    write(f"{'total':<28}{totals['attempts']:>9}{totals['blocked']:>9}{totals['bypassed']:>10}"
          f"{totals['skipped']:>9}{totals['error']:>7}")


# --- users and logins ------------------------------------------------------------------------------


def log_in(client: Client, user: Any) -> Client:
    """Sign `user` in on `client` (the one login of this suite; adapt here when MFA is required)."""
    client.force_login(user)
    return client


@pytest.fixture
def role_user(db) -> Callable[..., Any]:
    """role_user(role, name=None) → a user holding that one role, staff when the role works in admin."""

    def make(role: str, name: str | None = None, **kwargs: Any) -> Any:
        return UserFactory(username=name or f"ctl-{role}", groups=[role], is_staff=role in STAFF_ROLES, **kwargs)

    return make


@pytest.fixture(autouse=True)
def default_policies(request):
    """The default approval policies (a transactional test's flush removes them; post_migrate would restore)."""
    if request.node.get_closest_marker("django_db") is None and "db" not in request.fixturenames:
        return
    request.getfixturevalue("db")
    ensure_approval_defaults()


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


ROLES = ALL_ROLES


# --- attempts and subjects -------------------------------------------------------------------------


def attempt(action: Callable[[], Any]) -> Exception | None:
    """Run one bypass attempt in a savepoint; return the refusal (an ApplicationError) or None if it went through.

    A database error (a trigger or constraint refusing) counts as a refusal too; the savepoint keeps the
    test's transaction usable.
    """
    from django.db import DatabaseError, transaction

    from kernel.errors import ApplicationError

    try:
        with transaction.atomic():
            action()
    except (ApplicationError, DatabaseError) as exc:
        return exc
    return None


def pending_invoice(*, prepared_by: Any, total: str = "5000.00", **kwargs: Any) -> Any:
    """An invoice awaiting approval, prepared by `prepared_by`, with its approval request open (as a run leaves it)."""
    from decimal import Decimal

    from approvals.services import approval_request_open
    from tests.factories import InvoiceFactory

    amount = Decimal(total)
    invoice = InvoiceFactory(status="pending_approval", prepared_by=prepared_by, subtotal=amount, total=amount,
                             **kwargs)
    approval_request_open(subject=invoice, user=prepared_by)
    return invoice


def pending_request(subject: Any) -> Any:
    from django.contrib.contenttypes.models import ContentType

    from approvals.models import ApprovalRequest

    return ApprovalRequest.objects.filter(
        content_type=ContentType.objects.get_for_model(type(subject)), object_id=subject.pk, status="pending"
    ).first()
