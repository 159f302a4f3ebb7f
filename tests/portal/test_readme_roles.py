"""What README.md says each role does, each role can do.

Reads README's demo login table (username, role, lands on) and its "Roles" list, and checks
every claim: the user of that role, logged in through the login form with the README's
password, lands on the stated pages (200); every capability the README gives a role is one the
permissions matrix lets that role through (the matrix is checked against the views, cell by
cell, by test_permissions_matrix.py), and what the README says a role may *not* do, it may not.

A row or a role the test does not know fails: a README change must be checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from kernel.roles import ALL_ROLES, AUDITOR
from kernel.security import mfa_required
from portal import access
from portal.permissions_matrix import MATRIX, Outcome
from tests.factories import UserFactory
from tests.login import mark_session_verified

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "README.md"

#: A "lands on" fragment (the column is split at "," and ";") → the pages it names: URL name, query.
LANDS_ON: dict[str, list[tuple[str, str]]] = {
    "my timesheet and expenses": [("approvals:timesheet", ""), ("approvals:expense_list", "")],
    "rejections to fix": [("approvals:timesheet", ""), ("approvals:expense_list", "status=rejected")],
    "approvals of time, expenses, milestones, change orders of my projects": [
        ("approvals:pm_time", ""), ("approvals:pm_milestones", ""), ("approvals:pm_change_orders", ""),
    ],
    "the exception queue": [("billing:exception_queue", "")],
    "billing runs": [("billing:run_list", "")],
    "invoice review": [("billing:invoice_list", "")],
    "invoices awaiting my approval": [("billing:invoice_list", "status=pending_approval")],
    "overrides": [("billing:exception_queue", "")],
    "AR aging": [("disputes:aging", "")],
    "dunning": [("disputes:dunning", "")],
    "disputes": [("disputes:dispute_list", "")],
    "Django admin: rate cards, tax rules, policies": [
        ("admin:index", ""), ("admin:billing_ratecard_changelist", ""), ("admin:billing_taxrule_changelist", ""),
        ("admin:approvals_approvalpolicy_changelist", ""),
    ],
    "read-only search and history of every record": [("admin:index", ""), ("billing:invoice_list", "status=all")],
}
#: Fragments that the table writes with a comma inside (kept whole when splitting the column).
WHOLE_FRAGMENTS = [k for k in LANDS_ON if "," in k]

#: The "Roles" list: the bold name of each bullet → (the group it stands for, [(URL name, method)] the role
#: can do, [(URL name, method)] the README says it cannot). None: not a role group (integrations: the API).
ROLE_BULLETS: dict[str, tuple[str, list[tuple[str, str]], list[tuple[str, str]]] | None] = {
    "Consultants": ("consultant", [("approvals:timesheet", "POST"), ("approvals:expense_new", "POST"),
                                   ("approvals:expense_submit", "POST")], []),
    "Project managers": ("project_manager", [
        ("approvals:pm_time_approve_week", "POST"), ("approvals:pm_work_reject", "POST"),
        ("approvals:pm_milestone_action", "POST"), ("approvals:pm_change_order_new", "POST"),
        ("approvals:pm_change_order_edit", "POST"), ("approvals:pm_change_order_action", "POST"),
        ("billing:pm_invoice_list", "GET"), ("billing:pm_invoice_detail", "GET"),
    ], []),
    "Finance analysts": ("finance_analyst", [
        ("billing:run_list", "POST"), ("billing:exception_queue", "GET"), ("billing:invoice_revalidate", "POST"),
        ("billing:invoice_approve", "POST"), ("disputes:dispute_open", "POST"), ("disputes:credit_note_new", "POST"),
        ("disputes:payment_new", "POST"), ("disputes:payment_apply", "POST"),
    ], [("billing:invoice_write_down", "POST"), ("billing:invoice_override", "POST")]),
    "Finance controllers": ("finance_controller", [
        ("billing:invoice_approve", "POST"), ("billing:invoice_override", "POST"),
        ("billing:invoice_write_down", "POST"), ("approvals:request_decide", "POST"),
    ], []),
    "Collections": ("collections", [
        ("disputes:aging", "GET"), ("disputes:dunning_send", "POST"), ("disputes:handoff_new", "POST"),
    ], []),
    "Billing admins": ("billing_admin", [("admin:index", "GET")], []),
    "Auditors": ("auditor", [("admin:index", "GET"), ("billing:invoice_list", "GET"),
                             ("billing:invoice_detail", "GET")], []),
    "Integrations": None,
}
#: Model permissions the README's billing admin bullet names ("rate cards, tax rules and approval policies").
BILLING_ADMIN_MAINTAINS = ["billing.change_ratecard", "billing.change_taxrule", "approvals.change_approvalpolicy"]
#: POSTs an auditor, who "changes nothing", may still send: their own session and password.
# mfa: anyone may enrol an authenticator; customers:logout ends a session and changes no record.
AUDITOR_OWN_ACCOUNT = {"logout", "password_change", "mfa", "customers:logout"}


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def login_table() -> list[tuple[str, str, str]]:
    """(username, role group, lands on) of each row of the demo login table."""
    text = _readme()
    start = text.index("| username")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        username = cells[0].strip("`")
        group = re.search(r"\(`(\w+)`\)", cells[1])
        assert group, f"README login table: no Django group in {cells[1]!r}"
        rows.append((username, group[1], cells[2]))
    return rows


def demo_password() -> str:
    match = re.search(r"Every demo user has the password \*\*`([^`]+)`\*\*", _readme())
    assert match, "README: the demo password sentence is gone"
    return match[1]


def fragments(lands_on: str) -> list[str]:
    rest = lands_on
    found = []
    for whole in WHOLE_FRAGMENTS:
        if whole in rest:
            found.append(whole)
            rest = rest.replace(whole, "")
    found += [f.strip() for f in re.split(r"[,;]", rest) if f.strip()]
    return found


def role_bullets() -> dict[str, str]:
    """Bold name → the bullet's text, of the README's "## Roles" list."""
    text = _readme()
    section = text[text.index("\n## Roles\n"):]
    section = section[: section.index("\n## ", 1)]
    return {m[1]: m[2] for m in re.finditer(r"^- \*\*([^*]+)\*\*(.*?)(?=^- |\n\n|\Z)", section, re.M | re.S)}


def _allowed(role: str, url_name: str, method: str) -> bool:
    if url_name.startswith("admin:"):
        return True  # checked by request below (the admin guards itself by model permissions)
    return role in access.roles_allowed(url_name, method)


# --- the tests -----------------------------------------------------------------------------------------------


def test_the_test_knows_every_row_and_every_role_of_the_readme():
    rows = login_table()
    assert {group for _u, group, _l in rows} == set(ALL_ROLES), "every role has a demo login in the README"
    unknown = [(u, f) for u, _g, lands in rows for f in fragments(lands) if f not in LANDS_ON]
    assert not unknown, f"README 'lands on' phrases this test does not know (map them in LANDS_ON): {unknown}"
    bullets = role_bullets()
    assert set(bullets) == set(ROLE_BULLETS), (
        f"README 'Roles' bullets differ from the test's: {sorted(set(bullets) ^ set(ROLE_BULLETS))}"
    )


@pytest.mark.parametrize(("username", "group", "lands_on"), login_table())
def test_each_demo_login_lands_where_the_readme_says(username: str, group: str, lands_on: str):
    password = demo_password()
    user = UserFactory(username=username, groups=[group], is_staff=group not in ("consultant", "project_manager"))
    user.set_password(password)
    user.save()
    if group == "consultant":
        from tests.factories import PersonFactory

        PersonFactory(user=user)
    client = Client()
    response = client.post(reverse("login"), {"username": username, "password": password})
    assert response.status_code == 302 and response.url == reverse("home"), "logs in with the README's password"
    if mfa_required(user):
        # Outside DEBUG a controller or billing admin passes the TOTP check first (tests/controls/test_mfa.py).
        assert client.get(reverse("home")).url.startswith(reverse("mfa"))
        mark_session_verified(client, user)
    assert client.get(reverse("home")).status_code == 200

    for fragment in fragments(lands_on):
        for url_name, query in LANDS_ON[fragment]:
            url = reverse(url_name) + (f"?{query}" if query else "")
            response = client.get(url)
            assert response.status_code == 200, f"{username} ({group}): README says '{fragment}'; {url} answers " \
                                                 f"{response.status_code}"
            assert _allowed(group, url_name, "GET"), f"{group}: the matrix denies {url_name}"


@pytest.mark.parametrize("bullet", [b for b, spec in ROLE_BULLETS.items() if spec])
def test_each_role_can_do_what_the_readme_roles_list_says(bullet: str):
    group, can, cannot = ROLE_BULLETS[bullet]
    for url_name, method in can:
        assert _allowed(group, url_name, method), f"README: {bullet}…; the matrix denies {method} {url_name}"
    for url_name, method in cannot:
        assert not _allowed(group, url_name, method), f"README says {bullet} do not {url_name}; the matrix allows it"


def test_only_controllers_write_a_cap_excess_down_as_the_readme_says():
    text = _readme()
    assert "or the analyst writes down a cap excess" not in text
    assert "**write down** a cap excess" in text
    writers = access.roles_allowed("billing:invoice_write_down", "POST")
    assert writers == {"finance_controller"}


def test_billing_admins_maintain_rate_cards_tax_rules_and_policies_in_the_admin():
    admin_user = UserFactory(groups=["billing_admin"], is_staff=True)
    for perm in BILLING_ADMIN_MAINTAINS:
        assert admin_user.has_perm(perm), perm
    client = Client()
    client.force_login(admin_user)
    for name in ("admin:billing_ratecard_changelist", "admin:billing_taxrule_changelist",
                 "admin:approvals_approvalpolicy_changelist"):
        assert client.get(reverse(name)).status_code == 200, name


def test_auditors_change_nothing():
    """README: auditors read everything and change nothing — no POST of the portal changes anything for them.

    (`refused` cells are let through by the view and refused by the service: nothing changes.)
    """
    changes = sorted(
        rule.pattern for rule in MATRIX
        if rule.method == "POST" and rule.outcome(AUDITOR) == Outcome.ALLOW and rule.pattern not in AUDITOR_OWN_ACCOUNT
    )
    assert not changes, f"auditors may post to {changes}"
    auditor = UserFactory(groups=["auditor"], is_staff=True)
    assert not any(p.codename.split("_", 1)[0] in ("add", "change", "delete")
                   for p in Permission.objects.filter(group__name="auditor"))
    client = Client()
    client.force_login(auditor)
    assert client.get(reverse("admin:index")).status_code == 200
