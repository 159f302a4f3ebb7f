"""Finance rework and the business units' intervention ranking (issue #21): exact counts, page and drill-down."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Invoice
from insights.selectors import KpiFilters, finance_rework
from tests.factories import (
    ContractFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    ProjectFactory,
    UserFactory,
)
from tests.insights.kpis.factories import at, credit_note, issued, log

D = datetime.date
MARCH = dict(period_start=D(2025, 3, 1), period_end=D(2025, 3, 31), today=D(2025, 6, 1))


@pytest.fixture
def march():
    """Seven invoices issued in March (and one in April): which needed finance again is known by construction."""
    contract = ContractFactory()
    advisory = ProjectFactory(contract=contract, business_unit="Advisory")
    tax = ProjectFactory(contract=contract, business_unit="Tax")
    day = D(2025, 3, 10)
    inv = {}
    inv["clean"] = issued(contract=contract, project=advisory, issue_date=day)
    inv["revalidated"] = issued(contract=contract, project=advisory, issue_date=day)
    log(inv["revalidated"], "reopen_draft", "draft", at(D(2025, 3, 5)))
    inv["overridden_rejected"] = issued(contract=contract, project=advisory, issue_date=day)
    InvoiceExceptionFactory(invoice=inv["overridden_rejected"], severity="blocking", state="overridden")
    log(inv["overridden_rejected"], "reject", "draft", at(D(2025, 3, 6)))
    inv["credited"] = issued(contract=contract, project=tax, issue_date=day)
    credit_note(inv["credited"], total="100.00", issue_date=D(2025, 3, 20))
    # Billed to Tax through its line only (no project on the invoice): it counts under Tax.
    inv["rejected"] = issued(contract=contract, issue_date=day, lines=[dict(project=tax, position=1)])
    log(inv["rejected"], "reject", "draft", at(D(2025, 3, 7)))
    inv["cancelled_credit"] = issued(contract=contract, project=tax, issue_date=day)
    # A credit note drafted and cancelled before approval (never numbered): no credit was given.
    InvoiceFactory(
        kind=Invoice.Kind.CREDIT_NOTE,
        credit_of=inv["cancelled_credit"],
        contract=contract,
        issue_date=D(2025, 3, 21),
        total=Decimal("50.00"),
        status=Invoice.Status.CANCELLED,
    )
    inv["no_unit"] = issued(contract=contract, issue_date=day)
    # Outside the period, and a rejection logged after the as-of date: neither counts.
    log(
        issued(contract=contract, project=advisory, issue_date=D(2025, 4, 2)),
        "reopen_draft",
        "draft",
        at(D(2025, 3, 30)),
    )
    log(inv["clean"], "reject", "draft", at(D(2025, 4, 15)))
    return inv


@pytest.mark.django_db
def test_rework_counts_and_the_ranking_are_exact(march):
    result = finance_rework(KpiFilters(**MARCH))
    assert (result["issued"], result["reworked"], result["interventions"]) == (7, 4, 5)
    assert {r: result[r] for r in ("revalidated", "overridden", "rejected", "credited")} == {
        "revalidated": 1,
        "overridden": 1,
        "rejected": 2,
        "credited": 1,
    }
    assert result["rework_pct"] == 57.1
    ranking = [
        (r["rank"], r["business_unit"], r["issued"], r["reworked"], r["interventions"], r["rework_pct"])
        for r in result["by_business_unit"]
    ]
    # Advisory and Tax both rework 2 of 3; Advisory needed more interventions, so it ranks first.
    assert ranking == [(1, "Advisory", 3, 2, 3, 66.7), (2, "Tax", 3, 2, 2, 66.7), (3, "(none)", 1, 0, 0, 0.0)]
    tax_only = finance_rework(KpiFilters(**MARCH, business_unit="Tax"))
    assert (tax_only["issued"], tax_only["reworked"]) == (3, 2)


@pytest.mark.django_db
def test_the_ranking_page_drills_down_to_the_invoices(client, march):
    client.force_login(UserFactory(groups=["finance_controller"]))
    query = "period_start=2025-03-01&period_end=2025-03-31"
    page = client.get(f"{reverse('insights:rework_ranking')}?{query}")
    assert page.status_code == 200
    html = page.content.decode()
    table = html[html.index('id="rework-ranking"') :]
    assert table.index(">Advisory<") < table.index(">Tax<") < table.index("(none)")
    link = re.search(r'href="([^"]+business_unit=Advisory[^"]*)">Advisory<', table).group(1).replace("&amp;", "&")
    records = client.get(link)
    assert records.status_code == 200
    body = records.content.decode()
    for key in ("revalidated", "overridden_rejected"):
        assert march[key].number in body
    for key in ("clean", "credited", "rejected", "no_unit"):
        assert march[key].number not in body
    assert "overridden, rejected" in body
    # One reason only: the rejected invoices of Tax.
    reason = re.search(r'href="([^"]+business_unit=Tax[^"]*reason=rejected[^"]*)"', table).group(1)
    body = client.get(reason.replace("&amp;", "&")).content.decode()
    assert march["rejected"].number in body and march["credited"].number not in body


@pytest.mark.django_db
def test_the_ranking_page_is_for_finance(client):
    client.force_login(UserFactory(groups=["project_manager"]))
    assert client.get(reverse("insights:rework_ranking")).status_code == 403
