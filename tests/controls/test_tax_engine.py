"""Control `tax-never-silent-zero`: an invoice the tax engine could not quote never goes out (ADR 0076)."""

from __future__ import annotations

import pytest

from billing.models import Invoice
from billing.services.billing_engine import Code
from billing.services.invoices import invoice_override
from kernel.errors import ApplicationError
from tests.billing.test_tax_engine import bill, simulator, us_contract  # noqa: F401 - the simulator fixture
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("tax-never-silent-zero")]


def test_no_override_lets_an_unquoted_invoice_through(simulator):  # noqa: F811
    simulator.configure(outage=True)
    invoice = bill(us_contract(region="NY"))
    assert invoice.exceptions.filter(code=Code.TAX_ENGINE_UNAVAILABLE).exists()
    with pytest.raises(ApplicationError, match=Code.TAX_ENGINE_UNAVAILABLE):
        invoice_override(invoice=invoice, user=UserFactory(groups=["finance_controller"]), reason="Send it anyway")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.EXCEPTION and invoice.tax_total == 0
