"""Roles: the migration's groups and permissions, the role helpers and the object rules."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission

from kernel import roles
from tests.factories import (
    ChangeOrderFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def perms_of(role: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=role).permissions.values_list("content_type__app_label", "codename")
    }


def test_the_migration_created_every_role_group():
    assert set(Group.objects.filter(name__in=roles.ALL_ROLES).values_list("name", flat=True)) == set(roles.ALL_ROLES)
    for role in roles.ALL_ROLES:
        assert perms_of(role), f"{role} has no permissions"


def test_nobody_may_delete_financial_records():
    for role in roles.ALL_ROLES:
        assert not {p for p in perms_of(role) if ".delete_" in p}, role


def all_view_permissions(*apps: str) -> set[str]:
    qs = Permission.objects.filter(codename__startswith="view_")
    if apps:
        qs = qs.filter(content_type__app_label__in=apps)
    return {f"{app}.{codename}" for app, codename in qs.values_list("content_type__app_label", "codename")}


def test_auditor_reads_all_billing_records_history_and_transition_logs_and_changes_nothing():
    import billing.models

    auditor = perms_of(roles.AUDITOR)
    expected = {f"billing.view_{name.lower()}" for name in billing.models.__all__}
    expected |= {f"billing.view_historical{m}" for m in ("invoice", "timeentry", "client", "contract", "payment")}
    expected |= {"django_fsm_log.view_statelog", "auth.view_user", "auth.view_group"}
    assert expected <= auditor
    assert all(".view_" in p for p in auditor)


def test_post_migrate_sync_grants_models_of_apps_migrated_later():
    from django.apps import apps

    app_configs = list(apps.get_app_configs())
    roles.sync_roles_after_migrate(sender=app_configs[0])  # not the last app: waits for the others
    roles.sync_roles_after_migrate(sender=app_configs[-1])
    assert perms_of(roles.AUDITOR) == all_view_permissions()
    assert "sessions.view_session" in perms_of(roles.AUDITOR)


def test_billing_admin_maintains_master_data_rate_cards_tax_rules_and_contracts():
    perms = perms_of(roles.BILLING_ADMIN)
    for model in (
        "client",
        "legalentity",
        "ratecard",
        "ratecardline",
        "taxrule",
        "fxrate",
        "contract",
        "contractrate",
        "project",
        "person",
        "role",
    ):
        assert {f"billing.add_{model}", f"billing.change_{model}", f"billing.view_{model}"} <= perms, model
    assert "billing.change_invoice" not in perms
    assert "billing.view_invoice" in perms


def test_finance_views_all_billing_and_changes_invoices():
    for role in (roles.FINANCE_ANALYST, roles.FINANCE_CONTROLLER):
        perms = perms_of(role)
        assert {"billing.view_client", "billing.view_timeentry", "billing.view_historicaltimeentry"} <= perms
        assert {"billing.change_invoice", "billing.add_invoice", "billing.change_invoiceexception"} <= perms
        assert "billing.change_taxrule" not in perms
        assert "billing.change_timeentry" not in perms


def test_consultants_and_pms():
    consultant = perms_of(roles.CONSULTANT)
    assert {"billing.add_timeentry", "billing.add_expense", "billing.view_project"} <= consultant
    assert "billing.view_invoice" not in consultant
    pm = perms_of(roles.PROJECT_MANAGER)
    assert consultant <= pm
    assert {"billing.add_changeorder", "billing.change_changeorder", "billing.view_contract"} <= pm
    assert "billing.change_contract" not in pm


def test_collections_reads_receivables():
    perms = perms_of(roles.COLLECTIONS)
    assert {"billing.view_invoice", "billing.view_payment", "billing.view_client"} <= perms
    assert "billing.change_invoice" not in perms


def test_sync_is_idempotent_and_additive():
    roles.sync_role_permissions()
    before = {role: perms_of(role) for role in roles.ALL_ROLES}
    extra = Permission.objects.get(codename="delete_fxrate")
    Group.objects.get(name=roles.BILLING_ADMIN).permissions.add(extra)  # an admin's own grant survives
    roles.sync_role_permissions()
    after = {role: perms_of(role) for role in roles.ALL_ROLES}
    assert after[roles.BILLING_ADMIN] == before[roles.BILLING_ADMIN] | {"billing.delete_fxrate"}
    assert {r: p for r, p in after.items() if r != roles.BILLING_ADMIN} == {
        r: p for r, p in before.items() if r != roles.BILLING_ADMIN
    }


def test_a_group_member_gets_the_model_permissions():
    user = UserFactory(groups=[roles.AUDITOR])
    assert user.has_perm("billing.view_invoice")
    assert not user.has_perm("billing.change_invoice")


# --- helpers ------------------------------------------------------------------------------------


def test_user_roles_and_has_role():
    user = UserFactory(groups=[roles.PROJECT_MANAGER, roles.CONSULTANT, "some-other-group"])
    assert roles.user_roles(user) == {roles.PROJECT_MANAGER, roles.CONSULTANT}
    assert roles.has_role(user, roles.PROJECT_MANAGER)
    assert not roles.has_role(user, roles.FINANCE_CONTROLLER)
    assert roles.has_any_role(user, roles.FINANCE_ROLES | {roles.CONSULTANT})
    assert roles.user_roles(AnonymousUser()) == set()
    assert roles.user_roles(None) == set()
    user.is_active = False
    assert roles.user_roles(user) == set()


# --- object permissions (billing.rules) --------------------------------------------------------------


def test_approve_work_object_permission():
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    controller = UserFactory(groups=[roles.FINANCE_CONTROLLER])
    assert pm.has_perm("billing.approve_work", entry)
    assert controller.has_perm("billing.approve_work", entry)
    assert not ProjectFactory().project_manager.has_perm("billing.approve_work", entry)
    assert not UserFactory(groups=[roles.FINANCE_ANALYST]).has_perm("billing.approve_work", entry)
    assert not entry.person.user.has_perm("billing.approve_work", entry)
    own = TimeEntryFactory(project=entry.project, person=PersonFactory(user=pm))
    assert not pm.has_perm("billing.approve_work", own)  # SoD is part of the rule
    assert entry.person.user.has_perm("billing.submit_work", entry)


def test_milestone_and_change_order_object_permissions():
    milestone = MilestoneFactory(status="completed")
    pm = milestone.project.project_manager
    assert pm.has_perm("billing.complete_milestone", milestone)
    assert pm.has_perm("billing.approve_milestone", milestone)
    milestone.completed_by = pm
    assert not pm.has_perm("billing.approve_milestone", milestone)

    project = ProjectFactory()
    co = ChangeOrderFactory(contract=project.contract, submitted_by=project.project_manager)
    assert project.project_manager.has_perm("billing.submit_change_order", co)
    assert not project.project_manager.has_perm("billing.approve_change_order", co)
    assert UserFactory(groups=[roles.FINANCE_CONTROLLER]).has_perm("billing.approve_change_order", co)
    assert project.project_manager.has_perm("billing.manage_project", project)
    assert not project.project_manager.has_perm("billing.manage_contract", project.contract)
    assert UserFactory(groups=[roles.BILLING_ADMIN]).has_perm("billing.manage_contract", project.contract)
