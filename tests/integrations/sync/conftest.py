"""Fixtures of the inbound-sync tests: a PSA service user, an active project and a consultant."""

from __future__ import annotations

import pytest

from approvals.services.defaults import ensure_approval_defaults
from tests.factories import PersonFactory, ProjectFactory, RoleFactory, UserFactory


@pytest.fixture
def psa_user(db):
    return UserFactory(username="svc-psa")


@pytest.fixture
def world(db):
    ensure_approval_defaults()
    role = RoleFactory(code="CONSULTANT")
    project = ProjectFactory(code="PRJ-A")
    person = PersonFactory(code="P-ANNA", email="anna@billable.example", role=role, source="psa",
                           external_id="psa-anna")
    other = PersonFactory(code="P-BEN", email="ben@billable.example", role=role, source="psa",
                          external_id="psa-ben")
    return {"project": project, "person": person, "other": other, "role": role}
