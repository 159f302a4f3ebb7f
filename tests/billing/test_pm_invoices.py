"""A PM reads the invoices of their projects, read only; another PM's invoice is a 403."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from tests.factories import ContractFactory, InvoiceFactory, InvoiceLineFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm():
    return UserFactory(groups=["project_manager"])


def test_pm_lists_and_reads_the_invoices_of_their_projects_only(client, pm):
    mine = ProjectFactory(project_manager=pm, code="PRJ-MINE")
    shared = ContractFactory(code="C-SHARED")
    ProjectFactory(project_manager=pm, contract=shared)
    ProjectFactory(contract=shared)  # another PM's project on the same contract
    theirs = ProjectFactory(code="PRJ-THEIRS")
    per_project = InvoiceFactory(contract=mine.contract, project=mine, total=Decimal("1200.00"))
    InvoiceLineFactory(invoice=per_project, project=mine, description="CONSULTANT time")
    whole_contract = InvoiceFactory(contract=shared, status="posted", number="DE-2025-000042")
    other = InvoiceFactory(contract=theirs.contract, project=theirs)
    other_pms_project_on_my_contract = InvoiceFactory(
        contract=shared, project=ProjectFactory(contract=shared, code="PRJ-SHARED-THEIRS")
    )

    client.force_login(pm)
    response = client.get(reverse("billing:pm_invoice_list"))
    assert response.status_code == 200
    assert [i.pk for i in response.context["invoices"]] == sorted(
        [per_project.pk, whole_contract.pk], key=lambda pk: -pk
    )
    assert client.get(reverse("billing:pm_invoice_list"), {"status": "posted"}).context["invoices"] == [whole_contract]

    detail = client.get(reverse("billing:pm_invoice_detail", args=[per_project.pk]))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "CONSULTANT time" in html and "Read only" in html
    # No action: the only POST form is the log-out button; no finance page or document is linked.
    assert re.findall(r'<form method="post" action="([^"]+)"', html) == [reverse("logout")]
    assert "/billing/invoices/" not in html
    assert client.get(reverse("billing:pm_invoice_detail", args=[whole_contract.pk])).status_code == 200

    for invoice in (other, other_pms_project_on_my_contract):
        assert client.get(reverse("billing:pm_invoice_detail", args=[invoice.pk])).status_code == 403
    assert client.get(reverse("billing:pm_invoice_detail", args=[999999])).status_code == 404
    # The finance invoice screens stay closed to PMs.
    assert client.get(reverse("billing:invoice_detail", args=[per_project.pk])).status_code == 403
    assert client.get(reverse("billing:invoice_list")).status_code == 403


def test_the_menu_offers_pms_their_invoices(client, pm):
    ProjectFactory(project_manager=pm)
    client.force_login(pm)
    html = client.get(reverse("home")).content.decode()
    assert f'href="{reverse("billing:pm_invoice_list")}"' in html


def test_the_list_takes_a_fixed_number_of_queries(client, pm, django_assert_max_num_queries):
    project = ProjectFactory(project_manager=pm)
    client.force_login(pm)
    InvoiceFactory(contract=project.contract, project=project)
    client.get(reverse("billing:pm_invoice_list"))
    with django_assert_max_num_queries(30) as few:
        client.get(reverse("billing:pm_invoice_list"))
    InvoiceFactory.create_batch(10, contract=project.contract, project=project)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("billing:pm_invoice_list"))
    assert len(response.context["invoices"]) == 11
