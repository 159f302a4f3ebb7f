"""The revenue screens and the API through the real stack: who sees what, and the close from the screen."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from integrations.services.clients import integration_client_create
from revenue.models import RevenuePeriod
from revenue.services.close import revenue_close
from tests.factories import UserFactory

from .helpers import D, contract, controller, issue, work

pytestmark = pytest.mark.django_db


@pytest.fixture
def october(db):
    c, project = contract()
    work(project, D(2026, 10, 5), "8")
    issue(c, D(2026, 10, 30), "300.00")
    return c


def test_a_controller_closes_from_the_screen_and_every_report_shows_the_month(client, october):
    user = controller()
    client.force_login(user)
    page = client.get(reverse("revenue:close") + "?period=2026-10")
    assert page.status_code == 200 and b"check-unapproved_time" in page.content
    answer = client.post(reverse("revenue:close"), {"period": "2026-10", "action": "close", "reason": "month end"})
    assert answer.status_code == 302
    assert RevenuePeriod.objects.get(start=D(2026, 10, 1)).status == RevenuePeriod.Status.CLOSED
    for name, marker in (
        ("revenue:report", b"800.00"),
        ("revenue:balances", b"500.00"),
        ("revenue:reconciliation", b"Ties to the cent"),
    ):
        page = client.get(reverse(name) + "?period=2026-10")
        assert page.status_code == 200 and marker in page.content, name
    for group in ("client", "entity", "business_unit"):
        page = client.get(reverse("revenue:report") + f"?group={group}")
        assert page.status_code == 200 and page.content.count(b"800.00") == 2, group  # the month and the total
    assert b"Advisory" in client.get(reverse("revenue:report") + "?group=business_unit").content
    page = client.get(reverse("revenue:items") + f"?contract={october.code}&period=2026-10")
    assert page.status_code == 200 and b"items-time" in page.content and b"8.00" in page.content


def test_an_analyst_drafts_but_cannot_lock_and_an_auditor_only_reads(client, october):
    analyst = UserFactory(groups=["finance_analyst"])
    client.force_login(analyst)
    client.post(reverse("revenue:close"), {"period": "2026-10", "action": "close"})
    assert not RevenuePeriod.objects.filter(status=RevenuePeriod.Status.CLOSED).exists()
    client.post(reverse("revenue:close"), {"period": "2026-10", "action": "draft"})
    assert RevenuePeriod.objects.get().status == RevenuePeriod.Status.DRAFT
    auditor = UserFactory(groups=["auditor"])
    client.force_login(auditor)
    assert client.get(reverse("revenue:close")).status_code == 200
    assert client.post(reverse("revenue:close"), {"period": "2026-10", "action": "draft"}).status_code == 403
    client.force_login(UserFactory(groups=["consultant"]))
    assert client.get(reverse("revenue:report")).status_code == 403


def test_the_reconciliation_api_needs_its_scope(client, october):
    from revenue.services.close import revenue_close

    revenue_close(period="2026-10", user=controller(), lock=True)
    admin = UserFactory(groups=["billing_admin"], is_staff=True)
    _reader, token, _secret = integration_client_create(name="ledger", scopes=["read:revenue"], user=admin)
    _other, other_token, _secret2 = integration_client_create(name="kpi-only", scopes=["read:kpis"], user=admin)
    url = reverse("api:revenue-reconciliation") + "?period=2026-10"
    answer = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["ties"] is True and body["contracts"][0]["wip"] == "500.00"
    assert body["contracts"][0]["recognised_minus_billed"] == body["contracts"][0]["wip_minus_deferred"]
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {other_token}").status_code == 403
    bad = client.get(reverse("api:revenue-reconciliation") + "?period=oct", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bad.status_code == 400


def test_the_command_closes_a_month(october):
    import json
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("revenue_close", "--period", "2026-10", stdout=out)
    assert json.loads(out.getvalue())["status"] == "closed"
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="closed again"):
        call_command("revenue_close", "--period", "2026-10", stdout=StringIO())


def _report_rows(content: bytes) -> list[bytes]:
    table = content.split(b'id="revenue-by-month"', 1)[1].split(b"</table>", 1)[0]
    body = table.split(b"<tbody>", 1)[1]
    return re.findall(rb'<th scope="row">([^<]*)</th>', body)


def test_the_revenue_report_shows_one_page_of_rows_at_a_time(client, settings):
    settings.REVENUE_REPORT_ROWS_PER_PAGE = 2
    codes = []
    for _ in range(5):
        c, project = contract()
        work(project, D(2026, 10, 5), "8")
        codes.append(c.code)
    revenue_close(period="2026-10", user=controller(), lock=True)
    client.force_login(controller())

    pages = [client.get(reverse("revenue:report") + f"?group=contract&page={n}") for n in (1, 2, 3)]

    assert [p.status_code for p in pages] == [200, 200, 200]
    rows = [_report_rows(p.content) for p in pages]
    assert [len(r) for r in rows] == [2, 2, 1]
    assert [code.decode() for page_rows in rows for code in page_rows] == sorted(codes)
    assert b"1\xe2\x80\x932 of 5 contracts" in pages[0].content and b'rel="next"' in pages[0].content
    assert b"group=contract&amp;page=2" in pages[0].content  # the grouping survives paging
    assert b'rel="next"' not in pages[2].content
