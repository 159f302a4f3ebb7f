"""Inbound sync of master data: clients (VAT, ERP outbox), people, contracts with rates and change orders,
projects and milestones."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from approvals.models import ApprovalRequest
from approvals.services.defaults import ensure_approval_defaults
from billing.models import ChangeOrder, Client, Contract, ContractRate, Milestone, Person, Project
from integrations.models import OutboxMessage
from integrations.services.inbound import Result, upsert_records
from tests.factories import (
    ClientFactory,
    ContractFactory,
    LegalEntityFactory,
    MilestoneFactory,
    ProjectFactory,
    RateCardFactory,
    RoleFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def upsert(resource, records, user, **kwargs):
    return upsert_records(resource=resource, records=records, user=user, source="crm", **kwargs)


def client_record(ext="crm-1", **overrides):
    record = {"external_id": ext, "code": "ACME", "legal_name": "Acme GmbH", "address_line1": "Hauptstr. 1",
              "city": "Köln", "postal_code": "50667", "country": "de", "vat_id": "DE274158609", "currency": "eur",
              "payment_terms_days": 14, "billing_emails": "ap@acme.example", "po_required": "yes"}
    record.update(overrides)
    return record


def test_clients_created_unchanged_updated_and_checked(psa_user):
    first = upsert("clients", [client_record()], psa_user)
    assert first.results[0].result == Result.CREATED
    client = Client.objects.get(source="crm", external_id="crm-1")
    assert (client.country, client.currency, client.po_required, client.payment_terms_days) == ("DE", "EUR", True, 14)
    assert client.history.get().history_user == psa_user
    assert upsert("clients", [client_record()], psa_user).results[0].result == Result.UNCHANGED
    assert upsert("clients", [client_record(city="Bonn")], psa_user).results[0].result == Result.UPDATED

    bad = upsert("clients", [client_record("crm-2", code="BAD", vat_id="DE136695977"),
                             client_record("crm-3", code="BAD2", billing_emails="not-an-address", currency="EURO")],
                 psa_user)
    assert bad.results[0].field_errors == {"vat_id": ["Not a valid VAT id for DE."]}
    assert "currency" in bad.results[1].field_errors
    assert Client.objects.count() == 1


def test_a_client_keyed_in_by_hand_is_adopted_by_code_and_codes_stay_unique(psa_user):
    manual = ClientFactory(code="ACME")
    outcome = upsert("clients", [client_record()], psa_user)
    assert (outcome.results[0].result, outcome.results[0].id) == (Result.UPDATED, manual.pk)
    manual.refresh_from_db()
    assert (manual.source, manual.external_id) == ("crm", "crm-1")
    clash = upsert("clients", [client_record("crm-9")], psa_user).results[0]
    assert (clash.result, clash.code) == (Result.ERROR, "duplicate_code")


@override_settings(ERP_POSTING_ENABLED=True)
def test_a_new_customer_is_announced_to_the_erp_in_the_same_transaction(psa_user):
    upsert("clients", [client_record()], psa_user)
    message = OutboxMessage.objects.get(kind="upsert_customer")
    assert message.client.code == "ACME"
    upsert("clients", [client_record("crm-2", code="ACME2", vat_id="bad")], psa_user)  # refused: nothing queued
    assert OutboxMessage.objects.count() == 1


def test_erp_outbox_is_not_written_without_an_erp(psa_user):
    upsert("clients", [client_record()], psa_user)
    assert not OutboxMessage.objects.exists()


def test_people(psa_user):
    RoleFactory(code="SENIOR")
    LegalEntityFactory(code="NWB")
    outcome = upsert("people", [
        {"external_id": "p1", "code": "P-1", "name": "Anna Berg", "email": "anna@x.example", "role_code": "SENIOR",
         "home_entity_code": "NWB"},
        {"external_id": "p2", "code": "P-2", "name": "No Role", "role_code": "NOPE"},
    ], psa_user, partial=True)
    assert [r.result for r in outcome.results] == [Result.CREATED, Result.ERROR]
    assert outcome.results[1].field_errors == {"role_code": ["Not found."]}
    person = Person.objects.get(external_id="p1")
    assert (person.role.code, person.home_entity.code, person.active) == ("SENIOR", "NWB", True)
    again = upsert("people", [{"external_id": "p1", "active": False}], psa_user)
    assert again.results[0].result == Result.UPDATED and not Person.objects.get(external_id="p1").active


@pytest.fixture
def contract_refs(db):
    client = ClientFactory(code="ACME", source="crm", external_id="crm-1")
    entity = LegalEntityFactory(code="NWB")
    card = RateCardFactory(code="RC-EUR")
    role = RoleFactory(code="SENIOR")
    return client, entity, card, role


def contract_record(**overrides):
    record = {"external_id": "k1", "code": "C-ACME-1", "client_external_id": "crm-1", "entity_code": "NWB",
              "billing_model": "time_and_materials", "currency": "EUR", "rate_card_code": "RC-EUR", "cap": "50000",
              "status": "active", "rates": [{"role_code": "SENIOR", "rate": "150", "effective_from": "2025-01-01"}]}
    record.update(overrides)
    return record


def test_contracts_with_rates_and_status(contract_refs, psa_user):
    outcome = upsert("contracts", [contract_record()], psa_user)
    assert outcome.results[0].result == Result.CREATED, outcome.results[0]
    contract = Contract.objects.get(external_id="k1")
    assert (contract.status, contract.cap, contract.client.code) == ("active", Decimal("50000.00"), "ACME")
    rate = ContractRate.objects.get(contract=contract)
    assert (rate.role.code, rate.rate, rate.change_order) == ("SENIOR", Decimal("150.0000"), None)
    assert upsert("contracts", [contract_record()], psa_user).results[0].result == Result.UNCHANGED
    # a live contract's rates change only through an approved change order (ADR 0032)
    rates = [{"role_code": "SENIOR", "rate": "150", "effective_from": "2025-01-01", "effective_to": "2025-08-31"},
             {"role_code": "SENIOR", "rate": "160", "effective_from": "2025-09-01"}]
    refused = upsert("contracts", [contract_record(rates=rates)], psa_user).results[0]
    assert (refused.result, refused.code) == (Result.ERROR, "contract_terms_locked")
    assert ContractRate.objects.filter(contract=contract).count() == 1
    # while a contract is a draft, a rate ends (same key, an end date) and a later one is added; nothing is deleted
    draft = upsert("contracts", [contract_record(external_id="k2", code="C-2", status="draft", rates=rates[:1])],
                   psa_user).results[0]
    assert draft.result == Result.CREATED
    assert upsert("contracts", [contract_record(external_id="k2", code="C-2", status="draft", rates=rates)],
                  psa_user).results[0].result == Result.UPDATED
    assert ContractRate.objects.filter(contract__external_id="k2").count() == 2
    suspended = upsert("contracts", [contract_record(status="suspended")], psa_user).results[0]
    assert suspended.result == Result.UPDATED
    closed = upsert("contracts", [contract_record(status="closed")], psa_user).results[0]
    assert (closed.result, closed.code) == (Result.ERROR, "invalid_transition")


def test_contract_reference_and_retainer_errors(contract_refs, psa_user):
    outcome = upsert("contracts", [
        contract_record(client_external_id="nope"),
        contract_record(external_id="k2", code="C-2", billing_model="retainer"),
        contract_record(external_id="k3", code="C-3", rates=[{"rate": "1", "effective_from": "2025-01-01"}]),
    ], psa_user)
    assert [r.code for r in outcome.results] == ["unknown_reference", "invalid", "invalid"]
    assert outcome.results[0].field_errors == {"client_external_id": ["Not found."]}
    assert not Contract.objects.exists()


def test_change_orders_are_drafted_or_submitted_never_decided(contract_refs, psa_user):
    ensure_approval_defaults()
    change_order = {"code": "CO-1", "description": "More scope", "cap_delta": "10000", "status": "submitted",
                    "rates": [{"role_code": "SENIOR", "rate": "170", "effective_from": "2025-10-01"}]}
    outcome = upsert("contracts", [contract_record(change_orders=[change_order])], psa_user)
    assert outcome.results[0].result == Result.CREATED, outcome.results[0]
    co = ChangeOrder.objects.get(code="CO-1")
    assert (co.status, co.cap_delta, co.submitted_by, co.rates.count()) == (
        "submitted", Decimal("10000.00"), psa_user, 1)
    assert ApprovalRequest.objects.filter(object_id=co.pk, subject_type="change_order", status="pending").exists()
    same = upsert("contracts", [contract_record(change_orders=[change_order])], psa_user).results[0]
    assert same.result == Result.UNCHANGED
    changed = upsert("contracts", [contract_record(change_orders=[{**change_order, "cap_delta": "20000"}])],
                     psa_user).results[0]
    assert (changed.result, changed.code) == (Result.ERROR, "change_order_locked")
    decided = upsert("contracts", [contract_record(change_orders=[{**change_order, "status": "approved"}])],
                     psa_user).results[0]
    assert decided.result == Result.ERROR


def test_projects(contract_refs, psa_user):
    ContractFactory(code="C-ACME-1", client=contract_refs[0], status="active")
    pm = UserFactory(username="pm-x", email="PM@firm.example", groups=["project_manager"])
    outcome = upsert("projects", [
        {"external_id": "pr1", "code": "PRJ-1", "name": "Rollout", "contract_code": "C-ACME-1",
         "project_manager_email": "pm@firm.example", "status": "active"},
        {"external_id": "pr2", "code": "PRJ-2", "contract_code": "C-ACME-1", "status": "closed"},
    ], psa_user, partial=True)
    assert [r.result for r in outcome.results] == [Result.CREATED, Result.ERROR]
    project = Project.objects.get(external_id="pr1")
    assert (project.status, project.project_manager) == ("active", pm)
    assert upsert("projects", [{"external_id": "pr1", "status": "on_hold"}], psa_user).results[0].result == "updated"
    assert Project.objects.get(external_id="pr1").status == "on_hold"


def test_milestones_follow_the_source_only_while_planned(psa_user):
    project = ProjectFactory(code="PRJ-FF", contract__fixed_fee=True)
    record = {"external_id": "m1", "project_code": "PRJ-FF", "name": "Go-live", "amount": "12000",
              "due_date": "2025-06-30"}
    assert upsert("milestones", [record], psa_user).results[0].result == Result.CREATED
    assert upsert("milestones", [{**record, "amount": "13000"}], psa_user).results[0].result == Result.UPDATED
    MilestoneFactory(project=project, source="crm", external_id="m2", status="completed", amount=Decimal("5"))
    locked = upsert("milestones", [{**record, "external_id": "m2", "amount": "6"}], psa_user).results[0]
    assert (locked.result, locked.code) == (Result.ERROR, "milestone_locked")
    assert Milestone.objects.get(external_id="m2").amount == Decimal("5.00")
