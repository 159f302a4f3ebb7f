"""Admin of assistive intelligence: scores and models read-only; SOW suggestions decided through the service."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from insights.models import InvoiceScore, RiskModel, SowSuggestion
from tests.factories import ContractFactory, InvoiceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects():
    score = InvoiceScore.objects.create(invoice=InvoiceFactory(), anomaly_score=Decimal("1.2"))
    model = RiskModel.objects.create(algorithm="logistic_regression", samples=10, positives=1, note="Too little")
    contract = ContractFactory(po_number="")
    suggestion = SowSuggestion.objects.create(
        contract=contract, field="po_number", value="PO-4711", sentence="PO-4711."
    )
    return score, model, suggestion


def test_superuser_reads_everything_but_cannot_add_or_edit_scores(client, objects):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    for obj in objects:
        opts = obj._meta
        assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")).status_code == 200
        assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])).status_code == 200
        assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403


def test_the_accept_action_asks_a_reason_and_goes_through_the_service(client, objects):
    """The contract is live (active): accepting drafts a change order; the contract's PO is unchanged."""
    _score, _model, suggestion = objects
    client.force_login(UserFactory(is_superuser=True, is_staff=True, groups=["finance_controller"]))
    url = reverse("admin:insights_sowsuggestion_changelist")
    asked = client.post(url, {"action": "sow_suggestion_accept", "_selected_action": [suggestion.pk]})
    assert asked.status_code == 200 and 'name="reason"' in asked.content.decode()
    response = client.post(url, {"action": "sow_suggestion_accept", "_selected_action": [suggestion.pk],
                                 "apply": "1", "reason": "Signed SOW"})
    assert response.status_code == 302
    suggestion.refresh_from_db()
    suggestion.contract.refresh_from_db()
    assert suggestion.decision == "accepted" and suggestion.contract.po_number == ""
    assert (suggestion.change_order.status, suggestion.change_order.new_po_number) == ("draft", "PO-4711")


def test_auditors_cannot_run_the_actions(client, objects):
    _score, _model, suggestion = objects
    client.force_login(UserFactory(groups=["auditor"], is_staff=True))
    assert client.get(reverse("admin:insights_sowsuggestion_changelist")).status_code == 200
    client.post(
        reverse("admin:insights_sowsuggestion_changelist"),
        {"action": "sow_suggestion_reject", "_selected_action": [suggestion.pk]},
    )
    suggestion.refresh_from_db()
    assert suggestion.decision == "pending"
