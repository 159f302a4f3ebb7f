"""Control: the terms of a live contract (rates, cap, PO, payment terms, billing frequency, ...) change only
through an approved change order; an accepted SOW suggestion on a live contract drafts one
(docs/rules/approvals.md, ADR 0032).

Every test here is a bypass attempt — through the portal, the Django admin, the API with a token, the services
and the models directly, and the database — as each role; each must leave the contract as signed. The last
tests walk the one legitimate route (draft → submit → a second person approves) and see the terms applied.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from billing.models import ChangeOrder, Contract, ContractRate
from billing.models.contracts import CONTRACT_TERMS, ContractTermsLockedError
from billing.services.change_orders import (
    RateChange,
    change_order_approve,
    change_order_draft,
    change_order_submit,
)
from billing.services.contracts import contract_suspend
from insights.models import SowSuggestion
from insights.services.sow import sow_suggestion_accept
from integrations.services.clients import integration_client_create
from kernel.errors import ApplicationError, PermissionDeniedError, SegregationOfDutiesError
from tests.factories import (
    ChangeOrderFactory,
    ClientFactory,
    ContractFactory,
    ContractRateFactory,
    LegalEntityFactory,
    ProjectFactory,
    PurchaseOrderFactory,
    RateCardFactory,
    RoleFactory,
    UserFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.control("contract-amendments")]

ROLES = ["consultant", "project_manager", "finance_analyst", "finance_controller", "collections", "billing_admin",
         "auditor"]
SOW_DECIDERS = {"finance_analyst", "finance_controller", "billing_admin"}
SIGNED = {"cap": Decimal("400000.00"), "po_number": "PO-4711", "payment_terms_days": 30,
          "billing_frequency": "monthly"}


@pytest.fixture
def senior(db):
    return RoleFactory(code="SENIOR", name="Senior consultant")


@pytest.fixture
def contract(senior):
    """Active (live) since it was signed: cap 400,000, PO-4711, 30 days, monthly, a SENIOR rate of 150."""
    contract = ContractFactory(code="LIVE-1", **SIGNED)
    ContractRateFactory(contract=contract, role=senior, rate=Decimal("150"), effective_from=datetime.date(2025, 1, 1))
    return contract


@pytest.fixture
def project(contract):
    return ProjectFactory(contract=contract, code="LIVE-P1")


def user_of(role: str, **kwargs):
    return UserFactory(groups=[role], **kwargs)


def signed_terms(contract: Contract) -> dict:
    contract.refresh_from_db()
    return {name: getattr(contract, name) for name in SIGNED}


def rates_of(contract: Contract) -> list:
    return sorted(ContractRate.objects.filter(contract=contract).values_list("role_id", "rate", "effective_from",
                                                                              "effective_to"))


def assert_as_signed(contract: Contract, rates: list) -> None:
    assert signed_terms(contract) == SIGNED
    assert rates_of(contract) == rates


def cap_suggestion(contract: Contract, value: str = "900000.00 EUR") -> SowSuggestion:
    return SowSuggestion.objects.create(contract=contract, field="cap", value=value, sentence="NTE EUR 900,000.",
                                        document_name="sow.txt")


# --- the finding: an SOW upload rewrote a live contract's cap (issue #12, finding 3) --------------------------


@pytest.mark.parametrize("role", sorted(SOW_DECIDERS))
def test_accepting_an_sow_cap_on_a_live_contract_drafts_a_change_order_and_changes_nothing(contract, role):
    rates = rates_of(contract)
    suggestion = cap_suggestion(contract)
    user = user_of(role)

    accepted = sow_suggestion_accept(suggestion=suggestion, user=user, reason="Signed SOW v2")

    assert_as_signed(contract, rates)  # the cap is still 400,000
    co = accepted.change_order
    assert (co.status, co.cap_delta, co.new_cap, co.contract) == ("draft", Decimal("500000.00"), None, contract)
    assert co.history.first().history_user == user and "Signed SOW v2" in co.history.first().history_change_reason
    assert accepted.decision == "accepted"


@pytest.mark.parametrize(
    ("field", "value", "co_field", "co_value"),
    [
        ("payment_terms_days", "60", "new_payment_terms_days", 60),
        ("po_number", "PO-9999", "new_po_number", "PO-9999"),
        ("billing_frequency", "quarterly", "new_billing_frequency", "quarterly"),
    ],
)
def test_every_sow_term_on_a_live_contract_becomes_a_draft_change_order(contract, field, value, co_field, co_value):
    rates = rates_of(contract)
    suggestion = SowSuggestion.objects.create(contract=contract, field=field, value=value, sentence=".")
    accepted = sow_suggestion_accept(suggestion=suggestion, user=user_of("finance_analyst"), reason="SOW")
    assert_as_signed(contract, rates)
    assert getattr(accepted.change_order, co_field) == co_value and accepted.change_order.status == "draft"


def test_an_sow_rate_on_a_live_contract_becomes_a_change_order_rate_not_a_contract_rate(contract, senior):
    rates = rates_of(contract)
    suggestion = SowSuggestion.objects.create(contract=contract, field="rate", value="181.2500 EUR",
                                              role_code="SENIOR", sentence="Senior Consultant: EUR 1,450 per day")
    accepted = sow_suggestion_accept(suggestion=suggestion, user=user_of("finance_controller"), reason="SOW")
    assert_as_signed(contract, rates)
    assert list(accepted.change_order.rates.values_list("role__code", "rate")) == [("SENIOR", Decimal("181.2500"))]


def test_a_suspended_contract_is_live_too(contract):
    contract_suspend(contract=contract, user=user_of("billing_admin"), reason="Renegotiation")
    rates = rates_of(contract)
    accepted = sow_suggestion_accept(suggestion=cap_suggestion(contract), user=user_of("finance_analyst"),
                                     reason="SOW")
    assert accepted.change_order.status == "draft"
    assert signed_terms(contract)["cap"] == SIGNED["cap"] and rates_of(contract) == rates
    contract.refresh_from_db()
    contract.cap = Decimal("1")
    with pytest.raises(ContractTermsLockedError):
        contract.save()


@pytest.mark.parametrize("reason", ["", "   "])
def test_accepting_needs_a_reason(contract, reason):
    suggestion = cap_suggestion(contract)
    with pytest.raises(ApplicationError, match="reason is required"):
        sow_suggestion_accept(suggestion=suggestion, user=user_of("finance_controller"), reason=reason)
    suggestion.refresh_from_db()
    assert suggestion.decision == "pending" and not ChangeOrder.objects.exists()


@pytest.mark.parametrize("role", sorted(set(ROLES) - SOW_DECIDERS))
def test_other_roles_cannot_accept_at_all(contract, role):
    with pytest.raises(PermissionDeniedError):
        sow_suggestion_accept(suggestion=cap_suggestion(contract), user=user_of(role), reason="SOW")
    assert signed_terms(contract) == SIGNED and not ChangeOrder.objects.exists()


def test_on_a_draft_contract_the_term_is_written_at_once_with_the_reason(senior):
    draft = ContractFactory(code="DRAFT-1", status="draft", cap=Decimal("400000.00"))
    analyst = user_of("finance_analyst")
    accepted = sow_suggestion_accept(suggestion=cap_suggestion(draft), user=analyst, reason="Initial SOW")
    draft.refresh_from_db()
    assert draft.cap == Decimal("900000.00") and accepted.change_order is None
    latest = draft.history.first()
    assert latest.history_user == analyst and latest.history_change_reason.endswith("Initial SOW")


# --- the portal, as every role ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_portal_accept_as_each_role_never_changes_the_live_contract(client, contract, role):
    rates = rates_of(contract)
    suggestion = cap_suggestion(contract)
    client.force_login(user_of(role, is_staff=True))
    response = client.post(reverse("insights:sow_decide", args=[suggestion.pk]),
                           {"decision": "accept", "reason": "Client signed"})
    assert_as_signed(contract, rates)
    suggestion.refresh_from_db()
    if role in SOW_DECIDERS:
        assert response.status_code == 302
        assert suggestion.change_order.status == "draft" and suggestion.change_order.cap_delta == Decimal("500000")
    else:
        assert response.status_code == 403
        assert suggestion.decision == "pending" and not ChangeOrder.objects.exists()


def test_portal_accept_without_a_reason_is_refused_with_a_message(client, contract):
    suggestion = cap_suggestion(contract)
    client.force_login(user_of("finance_controller"))
    response = client.post(reverse("insights:sow_decide", args=[suggestion.pk]), {"decision": "accept"},
                           follow=True)
    assert "A reason is required to accept a SOW suggestion." in response.content.decode()
    suggestion.refresh_from_db()
    assert suggestion.decision == "pending" and signed_terms(contract) == SIGNED


# --- the Django admin, through the test client ---------------------------------------------------------------


class _FormScraper(HTMLParser):
    """The values a browser would post from the admin change form (id="<model>_form")."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value") or "")
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, [])
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select].append(a.get("value") or "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = [""]

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][0] += data


def _change_form(client, url: str) -> dict:
    scraper = _FormScraper()
    scraper.feed(client.get(url).content.decode())
    return {k: v if len(v) != 1 else v[0] for k, v in scraper.data.items() if k != "action"}


ADMIN_ROLES = ["billing_admin", "finance_controller", "finance_analyst", "auditor", "superuser"]


def admin_user(role: str):
    if role == "superuser":
        return UserFactory(is_staff=True, is_superuser=True)
    return UserFactory(is_staff=True, groups=[role])


@pytest.mark.parametrize("role", ADMIN_ROLES)
def test_admin_change_form_of_a_live_contract_does_not_change_its_terms(client, contract, role):
    rates = rates_of(contract)
    client.force_login(admin_user(role))
    url = reverse("admin:billing_contract_change", args=[contract.pk])
    data = _change_form(client, url)
    assert "cap" not in data and "po_number" not in data  # read-only on a live contract
    data.update({"cap": "900000.00", "po_number": "PO-HACK", "payment_terms_days": "90",
                 "billing_frequency": "quarterly", "name": "Renamed", "_save": "Save"})
    for key in [k for k in data if k.startswith("rates-")]:  # a new rate row smuggled in
        del data[key]
    data.update({"rates-TOTAL_FORMS": "1", "rates-INITIAL_FORMS": "0", "rates-0-role": str(contract.rates.first()
                 .role_id), "rates-0-rate": "999", "rates-0-effective_from": "2025-06-01"})
    response = client.post(url, data)
    assert response.status_code in (200, 302, 403)
    assert_as_signed(contract, rates)


@pytest.mark.parametrize("role", ADMIN_ROLES)
def test_admin_cannot_add_change_or_delete_a_rate_of_a_live_contract(client, contract, senior, role):
    rates = rates_of(contract)
    client.force_login(admin_user(role))
    response = client.post(reverse("admin:billing_contractrate_add"), {
        "contract": contract.pk, "role": senior.pk, "rate": "999", "effective_from": "2025-06-01"})
    assert response.status_code in (200, 403)
    if response.status_code == 200:
        assert "change only through an approved change order" in response.content.decode()
    existing = ContractRate.objects.get(contract=contract)
    change = client.post(reverse("admin:billing_contractrate_change", args=[existing.pk]), {
        "contract": contract.pk, "role": senior.pk, "rate": "999", "effective_from": "2025-01-01",
        "effective_to": "2025-01-31"})
    assert change.status_code == 403
    delete = client.post(reverse("admin:billing_contractrate_delete", args=[existing.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert_as_signed(contract, rates)


def test_admin_still_edits_the_terms_and_rates_of_a_draft_contract(client, senior):
    draft = ContractFactory(code="DRAFT-2", status="draft", cap=Decimal("1000.00"))
    client.force_login(admin_user("billing_admin"))
    url = reverse("admin:billing_contract_change", args=[draft.pk])
    data = _change_form(client, url)
    data.update({"cap": "2000.00", "_save": "Save"})
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    draft.refresh_from_db()
    assert draft.cap == Decimal("2000.00")
    added = client.post(reverse("admin:billing_contractrate_add"), {
        "contract": draft.pk, "role": senior.pk, "rate": "120", "effective_from": "2025-06-01"})
    assert added.status_code == 302 and ContractRate.objects.filter(contract=draft).count() == 1


# --- the API with a token (inbound sync upserts) ---------------------------------------------------------------


@pytest.fixture
def crm_api(db):
    cache.clear()
    _client, token, _secret = integration_client_create(name="crm-amend", scopes=["write:masterdata",
                                                                                    "read:masterdata"], source="crm")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    yield api
    cache.clear()


@pytest.fixture
def synced_contract(senior):
    ClientFactory(code="ACME-S", source="crm", external_id="crm-acme")
    LegalEntityFactory(code="NWB-S")
    RateCardFactory(code="RC-S")
    return {"external_id": "opp-1", "code": "SYNC-1", "client_external_id": "crm-acme", "entity_code": "NWB-S",
            "billing_model": "time_and_materials", "currency": "EUR", "rate_card_code": "RC-S", "cap": "400000",
            "po_number": "PO-4711", "payment_terms_days": 30, "billing_frequency": "monthly", "status": "active",
            "rates": [{"role_code": "SENIOR", "rate": "150", "effective_from": "2025-01-01"}]}


def _post(api, body, key, path="/api/v1/contracts/"):
    return api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize(
    ("change", "field"),
    [({"cap": "900000"}, "cap"), ({"po_number": "PO-X"}, "po_number"), ({"payment_terms_days": 90},
     "payment_terms_days"), ({"billing_frequency": "quarterly"}, "billing_frequency"),
     ({"discount_pct": "10"}, "discount_pct"),
     ({"rates": [{"role_code": "SENIOR", "rate": "999", "effective_from": "2025-01-01"}]}, "rates"),
     ({"rates": [{"role_code": "SENIOR", "rate": "150", "effective_from": "2025-01-01"},
                 {"role_code": "SENIOR", "rate": "999", "effective_from": "2025-06-01"}]}, "rates"),
     ({"rates": [{"role_code": "SENIOR", "rate": "150", "effective_from": "2025-01-01",
                  "effective_to": "2025-01-31"}]}, "rates")],
)
def test_api_upsert_changing_a_live_contracts_terms_is_refused(crm_api, synced_contract, change, field):
    assert _post(crm_api, synced_contract, "k-create").status_code == 201
    contract = Contract.objects.get(external_id="opp-1")
    rates = rates_of(contract)
    response = _post(crm_api, {**synced_contract, **change}, "k-change")
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "contract_terms_locked" and field in body["field_errors"]
    assert "change order" in body["message"]
    assert signed_terms(contract) == SIGNED and rates_of(contract) == rates
    put = crm_api.put("/api/v1/contracts/opp-1/", {**synced_contract, **change}, format="json")
    assert put.status_code == 409 and put.json()["code"] == "contract_terms_locked"
    bulk = _post(crm_api, {"records": [{**synced_contract, **change}]}, "k-bulk", "/api/v1/contracts/bulk/")
    assert bulk.json()["results"][0]["code"] == "contract_terms_locked"
    assert signed_terms(contract) == SIGNED and rates_of(contract) == rates


def test_api_unchanged_terms_and_other_fields_still_sync(crm_api, synced_contract):
    assert _post(crm_api, synced_contract, "k-1").status_code == 201
    same = _post(crm_api, synced_contract, "k-2")
    assert same.status_code == 200 and same.json()["result"] == "unchanged"
    renamed = _post(crm_api, {**synced_contract, "name": "New name"}, "k-3")
    assert renamed.status_code == 200 and renamed.json()["result"] == "updated"


def test_api_sends_the_change_as_a_change_order_which_changes_nothing_until_approved(crm_api, synced_contract):
    assert _post(crm_api, synced_contract, "k-1").status_code == 201
    contract = Contract.objects.get(external_id="opp-1")
    order = {"code": "CO-CRM-1", "cap_delta": "500000", "new_payment_terms_days": 45, "status": "submitted"}
    response = _post(crm_api, {**synced_contract, "change_orders": [order]}, "k-2")
    assert response.status_code == 200, response.content
    co = ChangeOrder.objects.get(code="CO-CRM-1")
    assert (co.status, co.new_payment_terms_days) == ("submitted", 45)
    assert signed_terms(contract) == SIGNED
    decided = _post(crm_api, {**synced_contract, "change_orders": [{**order, "status": "approved"}]}, "k-3")
    assert decided.status_code == 400 and signed_terms(contract) == SIGNED


# --- services, models and the database directly ------------------------------------------------------------


@pytest.mark.parametrize("term", CONTRACT_TERMS)
def test_the_model_refuses_a_save_that_changes_any_term(contract, term):
    other = {"client": lambda: ClientFactory(), "entity": lambda: LegalEntityFactory(),
             "billing_model": lambda: "fixed_fee", "currency": lambda: "USD",
             "rate_card": lambda: RateCardFactory(), "cap": lambda: Decimal("1.00"),
             "expense_markup_pct": lambda: Decimal("5"), "discount_pct": lambda: Decimal("5"),
             "po_number": lambda: "PO-Z", "payment_terms_days": lambda: 99, "billing_frequency": lambda: "quarterly",
             "retainer_amount": lambda: Decimal("5.00"), "included_hours": lambda: Decimal("5.00"),
             "purchase_order": lambda: PurchaseOrderFactory(client=contract.client, currency=contract.currency),
             "requires_signed_change_orders": lambda: not contract.requires_signed_change_orders,
             "requires_customer_signoff": lambda: not contract.requires_customer_signoff}[term]()
    contract.refresh_from_db()
    setattr(contract, term, other)
    with pytest.raises(ContractTermsLockedError) as refused:
        contract.save()
    assert refused.value.code == "contract_terms_locked" and term in refused.value.field_errors
    assert signed_terms(contract) == SIGNED


def test_an_instance_not_loaded_from_the_database_is_checked_too(contract):
    forged = Contract(**{f.attname: getattr(contract, f.attname) for f in Contract._meta.concrete_fields})
    forged._state.adding = False
    forged.cap = Decimal("900000.00")
    with pytest.raises(ContractTermsLockedError):
        forged.save()
    assert signed_terms(contract) == SIGNED


def test_the_model_refuses_adding_changing_or_deleting_a_live_contracts_rate(contract, senior):
    with pytest.raises(ContractTermsLockedError):
        ContractRate.objects.create(contract=contract, role=senior, rate=Decimal("999"),
                                    effective_from=datetime.date(2025, 6, 1))
    rate = ContractRate.objects.get(contract=contract)
    rate.effective_to = datetime.date(2025, 1, 31)
    with pytest.raises(ContractTermsLockedError):
        rate.save()
    with pytest.raises(ContractTermsLockedError):
        rate.delete()
    assert rates_of(contract) == [(senior.pk, Decimal("150.0000"), datetime.date(2025, 1, 1), None)]


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", ["update", "bulk_create", "sql", "rate_update", "rate_delete"])
def test_the_database_refuses_every_path_around_the_models(contract, senior, attempt):
    """PostgreSQL triggers (billing/0011): a queryset update, a bulk insert or raw SQL cannot amend either."""
    rates = rates_of(contract)
    with pytest.raises(IntegrityError, match="approved change order"), transaction.atomic():
        if attempt == "update":
            Contract.objects.filter(pk=contract.pk).update(cap=Decimal("900000"))
        elif attempt == "bulk_create":
            ContractRate.objects.bulk_create([ContractRate(contract=contract, role=senior, rate=Decimal("999"),
                                                           effective_from=datetime.date(2025, 6, 1))])
        elif attempt == "sql":
            with connection.cursor() as cursor:
                cursor.execute("UPDATE billing_contract SET po_number = 'PO-SQL' WHERE id = %s", [contract.pk])
        elif attempt == "rate_update":
            ContractRate.objects.filter(contract=contract).update(rate=Decimal("1"))
        else:
            ContractRate.objects.filter(contract=contract)._raw_delete(connection.alias)
    assert_as_signed(contract, rates)


@pytest.mark.postgres
def test_the_database_still_lets_a_draft_contract_be_set_up(senior):
    draft = ContractFactory(code="DRAFT-DB", status="draft")
    Contract.objects.filter(pk=draft.pk).update(cap=Decimal("5"))
    ContractRate.objects.bulk_create([ContractRate(contract=draft, role=senior, rate=Decimal("1"),
                                                   effective_from=datetime.date(2025, 1, 1))])
    draft.refresh_from_db()
    assert draft.cap == Decimal("5.00") and draft.rates.count() == 1


@pytest.mark.parametrize("role", ["consultant", "collections", "auditor"])
def test_only_pms_finance_and_billing_admins_draft_change_orders(contract, project, role):
    with pytest.raises(PermissionDeniedError):
        change_order_draft(contract=contract, user=user_of(role), reason="x", cap_delta=Decimal("1"))
    assert not ChangeOrder.objects.exists()


def test_a_drafted_change_order_needs_a_reason_and_a_change(contract):
    analyst = user_of("finance_analyst")
    with pytest.raises(ApplicationError, match="reason"):
        change_order_draft(contract=contract, user=analyst, reason=" ", cap_delta=Decimal("1"))
    with pytest.raises(ApplicationError, match="changes nothing"):
        change_order_draft(contract=contract, user=analyst, reason="why")


def test_a_new_cap_is_only_for_a_contract_without_one_and_on_milestone_only_for_fixed_fee(contract):
    analyst = user_of("finance_analyst")
    with pytest.raises(ApplicationError, match="already has a cap"):
        change_order_draft(contract=contract, user=analyst, reason="why", new_cap=Decimal("5"))
    with pytest.raises(ApplicationError, match="not fixed fee"):
        change_order_draft(contract=contract, user=analyst, reason="why", new_billing_frequency="on_milestone")


# --- the one legitimate route: draft → submit → a second person approves ---------------------------------------


def test_the_sow_change_order_applies_its_terms_only_when_someone_else_approves_it(contract, project, senior):
    # The change-order route: the project's PM, then (for large amendments) a controller — each at their step.
    analyst, controller = user_of("finance_analyst"), project.project_manager
    second = user_of("finance_controller")
    for field, value, role in [("cap", "900000.00 EUR", ""), ("payment_terms_days", "60", ""),
                               ("po_number", "PO-2026", ""), ("billing_frequency", "quarterly", ""),
                               ("rate", "181.2500 EUR", "SENIOR")]:
        suggestion = SowSuggestion.objects.create(contract=contract, field=field, value=value, role_code=role,
                                                  sentence=".", document_name="sow.txt")
        co = sow_suggestion_accept(suggestion=suggestion, user=analyst, reason="Signed SOW v2").change_order
        before = (signed_terms(contract), rates_of(contract))
        change_order_submit(change_order=co, user=analyst)
        with pytest.raises(SegregationOfDutiesError):
            change_order_approve(change_order=co, user=analyst, reason="mine")
        assert (signed_terms(contract), rates_of(contract)) == before  # submitted is not approved
        change_order_approve(change_order=co, user=controller, reason="Client countersigned")
        co.refresh_from_db()
        if co.status == "submitted":
            change_order_approve(change_order=co, user=second, reason="Client countersigned")
            co.refresh_from_db()
        assert co.status == "approved"
    contract.refresh_from_db()
    assert (contract.payment_terms_days, contract.po_number, contract.billing_frequency) == (60, "PO-2026",
                                                                                             "quarterly")
    assert contract.cap == SIGNED["cap"]  # the cap grows by the approved delta (the engine sums them)
    assert sum(co.cap_delta for co in contract.change_orders.filter(status="approved")) == Decimal("500000.00")
    sow_rate = ContractRate.objects.get(contract=contract, rate=Decimal("181.2500"))
    assert sow_rate.change_order.code.startswith("SOW-")
    latest = contract.history.first()
    assert latest.history_user in (controller, second)
    assert "Applied by approved change order" in latest.history_change_reason


def test_a_new_cap_is_set_by_approval_on_a_contract_that_had_none(db):
    project = ProjectFactory(contract=ContractFactory(code="NO-CAP", cap=None))
    contract = project.contract
    contract.refresh_from_db()
    assert contract.cap is None
    analyst, controller = user_of("finance_analyst"), project.project_manager
    co = sow_suggestion_accept(suggestion=cap_suggestion(contract, "250000.00 EUR"), user=analyst,
                               reason="SOW").change_order
    assert co.new_cap == Decimal("250000.00")
    change_order_submit(change_order=co, user=analyst)
    contract.refresh_from_db()
    assert contract.cap is None
    change_order_approve(change_order=co, user=controller, reason="Signed")
    contract.refresh_from_db()
    assert contract.cap == Decimal("250000.00")


def test_a_rejected_or_pending_change_order_changes_nothing(contract, project):
    rates = rates_of(contract)
    co = ChangeOrderFactory(contract=contract, new_po_number="PO-NEVER", new_payment_terms_days=99)
    assert_as_signed(contract, rates)
    change_order_submit(change_order=co, user=project.project_manager)
    assert_as_signed(contract, rates)
    from billing.services.change_orders import change_order_reject

    change_order_reject(change_order=co, user=user_of("finance_controller"), reason="Not signed")
    assert_as_signed(contract, rates)


def test_a_rate_change_order_drafted_directly_goes_the_same_route(contract, project, senior):
    rates = rates_of(contract)
    co = change_order_draft(contract=contract, user=project.project_manager, reason="New senior rate",
                            rates=[RateChange(role=senior, rate=Decimal("170"),
                                              effective_from=datetime.date(2026, 1, 1))])
    assert co.status == "draft" and rates_of(contract) == rates
