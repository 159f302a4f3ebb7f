"""Collections in a real browser: AR aging → drill-down → hand-off; dunning "Send now"; statement and profile."""

from __future__ import annotations

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import expect

from disputes.models import CollectionsHandoff, CollectionsProfile, DunningNotice
from tests.disputes.collections.factories import issued_invoice, payment
from tests.factories import DEFAULT_PASSWORD, ClientFactory, LegalEntityFactory, UserFactory
from tests.login import log_in as form_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def log_in(page, username: str, next_url: str) -> None:
    """The login form, then the TOTP code when the user must pass two-factor (tests/login.py)."""
    form_log_in(page, username, next_url)


def test_collections_works_aging_hand_off_dunning_and_statement(e2e_settings, new_page, shoot):
    e2e_settings.DUNNING_ATTACH_PDF = False
    today = timezone.localdate()
    cole = UserFactory(username="cole", first_name="Cole", last_name="Lector", groups=["collections"])
    # Hash with this session's hasher: the factories' cached hash may come from a test that swapped the hashers.
    cole.set_password(DEFAULT_PASSWORD)
    cole.save(update_fields=["password"])
    entity = LegalEntityFactory(code="NWB", name="Nordwind Beratung GmbH")
    acme = ClientFactory(legal_name="Acme Maschinenbau AG", billing_emails="ap@acme.example")
    late = issued_invoice(client=acme, entity=entity, total="4760.00", days_late=45, today=today)
    issued_invoice(client=acme, entity=entity, total="1190.00", days_late=8, today=today)
    issued_invoice(client=acme, entity=entity, currency="USD", total="900.00", days_late=-3, today=today)
    other = issued_invoice(entity=entity, total="300.00", days_late=95, status="disputed", today=today)
    payment(client=acme, amount="250.00", on=today)

    page = new_page()
    log_in(page, "cole", "/disputes/collections/aging/")
    table = page.locator(".aging-table")
    expect(table).to_contain_text("Acme Maschinenbau AG")
    expect(table).to_contain_text(other.client.legal_name)
    shoot(page, "collections-01-aging")

    # Drill into Acme's 31–60 cell: the 45-days-late invoice, and hand it off.
    page.locator(f'a[href*="client={acme.pk}"][href*="bucket=31_60"]').click()
    drill = page.locator("#drill")
    expect(drill).to_contain_text(late.number)
    shoot(page, "collections-02-drill")
    drill.get_by_role("link", name="Hand off").click()
    page.get_by_label("Handed to").fill("Inkasso Nord GmbH")
    page.get_by_label("Reason").fill("No answer to two reminders and three calls")
    page.get_by_role("button", name="Hand off").click()
    expect(page.locator(".message")).to_contain_text(f"{late.number} handed off to Inkasso Nord GmbH")
    assert CollectionsHandoff.objects.get(invoice=late).status == "open"

    # Dunning: the 8-days-late invoice is due level 1; the handed-off and the disputed ones are held back.
    page.goto("/disputes/collections/dunning/")
    expect(page.locator("#held-title")).to_contain_text("Held back (2)")
    shoot(page, "collections-03-dunning")
    page.get_by_role("button", name="Send now").click()
    expect(page.locator(".message")).to_contain_text("1 sent, 0 failed")
    assert [m.to for m in mail.outbox] == [["ap@acme.example"]]
    assert DunningNotice.objects.filter(result="sent").count() == 1

    # Statement: per currency, unapplied cash; then a payment plan from the profile form.
    page.goto(f"/disputes/collections/clients/{acme.pk}/statement/")
    main = page.locator("main")
    expect(main).to_contain_text("Account activity · EUR")
    expect(main).to_contain_text("Account activity · USD")
    expect(main).to_contain_text("Payment, not applied yet")
    page.get_by_label("In a payment plan (no reminders)").check()
    page.get_by_label("Plan terms").fill("3 monthly instalments of 1,500 EUR from July")
    page.get_by_role("button", name="Save profile").click()
    expect(page.locator(".message")).to_contain_text("in a payment plan (no reminders)")
    assert CollectionsProfile.objects.get(client=acme).in_payment_plan
    shoot(page, "collections-04-statement")
