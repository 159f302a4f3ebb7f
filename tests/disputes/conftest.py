"""Fixtures of the disputes and credit-note tests: real invoices (run, approve, post) and people in roles."""

from __future__ import annotations

import pytest

from approvals.services.defaults import ensure_approval_defaults
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def default_policies(request):
    """The default approval policies (a transactional test's flush removes them; post_migrate would restore)."""
    if request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("_django_db_helper")
    ensure_approval_defaults()


@pytest.fixture
def analyst():
    return UserFactory(username="dispute-analyst", groups=["finance_analyst"])


@pytest.fixture
def controller():
    return UserFactory(username="dispute-controller", groups=["finance_controller"])


@pytest.fixture
def collector():
    return UserFactory(username="dispute-collections", groups=["collections"])


@pytest.fixture
def auditor():
    return UserFactory(username="dispute-auditor", groups=["auditor"])


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    """Attachments of these tests go to a temporary directory, not var/media."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
