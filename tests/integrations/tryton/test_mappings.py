"""The ERP company and tax mappings: edited by billing admins in admin, checked against the real Tryton."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from billing.demo import ENTITIES
from billing.models import LegalEntity
from integrations.models import ErpEntityMapping, ErpTaxMapping
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _entities() -> list[LegalEntity]:
    return [LegalEntity.objects.update_or_create(
        code=spec["code"], defaults={k: v for k, v in spec.items() if k != "code"})[0] for spec in ENTITIES]


def test_erp_check_enters_the_demo_mappings_and_finds_them_all_in_tryton(tryton, tryton_settings, capsys):
    _entities()
    call_command("erp_check", "--demo-mappings")
    out = capsys.readouterr().out
    assert "Every entity's ERP mapping resolves." in out
    assert ErpEntityMapping.objects.count() == 3 and ErpTaxMapping.objects.count() == 6


def test_erp_check_fails_on_a_company_or_tax_tryton_does_not_have(tryton, tryton_settings, capsys):
    entities = {e.code: e for e in _entities()}
    call_command("erp_check", "--demo-mappings")
    ErpTaxMapping.objects.filter(entity=entities["TLL"], category="S").update(erp_tax="VAT 17.5% (S)")
    ErpEntityMapping.objects.filter(entity=entities["HUD"]).update(erp_company="Hudson Holdings")
    with pytest.raises(CommandError, match="2 ERP mapping problem"):
        call_command("erp_check")
    err = capsys.readouterr().err
    assert "TLL: tax S 20.00% maps to 'VAT 17.5% (S)', which Tryton's company has 0 of." in err
    assert "HUD: Tryton has 0 companies named 'Hudson Holdings'." in err


def test_a_billing_admin_edits_the_tax_mapping_in_admin_with_history(client):
    nwb = _entities()[0]
    admin_user = UserFactory(username="ba-erp", groups=["billing_admin"], is_staff=True)
    client.force_login(admin_user)
    response = client.post(reverse("admin:integrations_erptaxmapping_add"), {
        "entity": nwb.pk, "category": "S", "rate": "19.00", "erp_tax": "VAT 19% (S)", "_save": "Save"})
    assert response.status_code == 302 and response.url.endswith("/erptaxmapping/"), response.get("Location")
    mapping = ErpTaxMapping.objects.get(entity=nwb, category="S")
    assert mapping.history.get().history_user == admin_user
    analyst = UserFactory(username="fa-erp", groups=["finance_analyst"], is_staff=True)
    client.force_login(analyst)
    assert client.get(reverse("admin:integrations_erptaxmapping_change", args=[mapping.pk])).status_code == 200
    response = client.post(reverse("admin:integrations_erptaxmapping_change", args=[mapping.pk]), {
        "entity": nwb.pk, "category": "S", "rate": "19.00", "erp_tax": "Other", "_save": "Save"})
    assert response.status_code == 403  # finance reads the mapping, billing admins change it
    mapping.refresh_from_db()
    assert mapping.erp_tax == "VAT 19% (S)"
