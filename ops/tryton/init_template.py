"""Set up Billable's Tryton template database (run by ops/tryton/setup.sh with .tryton-venv's python).

The database exists and has `account_invoice` activated (trytond-admin did that). This adds, through
proteus on the database directly (no server needed):

- three companies, one per demo legal entity (NWB Germany EUR, TLL United Kingdom GBP, HUD United
  States USD), each with the "Universal Chart of Accounts" (account.account_template_root_en);
- fiscal years 2024 to 2030 (fixed: a cached template serves whatever the date) with monthly periods
  and strict invoice / credit-note sequences, per company;
- the VAT taxes Billable's tax categories map to (integrations.ErpTaxMapping names them), per company;
- a cash payment method per company (what the pay wizard books customer payments with);
- the countries Billable's demo clients live in (party addresses point at them).

Usage: python init_template.py <trytond.conf> <database>
"""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal

from proteus import Model
from proteus import config as pconfig

COMPANIES = [
    # code, name, currency, country, VAT id, taxes: (name, rate)
    ("NWB", "Nordwind Beratung GmbH", "EUR", "DE", "DE136695976",
     [("VAT 19% (S)", "0.19"), ("VAT 0% reverse charge (AE)", "0"), ("VAT 0% out of scope (O)", "0")]),
    ("TLL", "Thames Ledger Ltd", "GBP", "GB", "GB980780684",
     [("VAT 20% (S)", "0.20"), ("VAT 0% out of scope (O)", "0")]),
    ("HUD", "Hudson Advisory Inc", "USD", "US", "",
     [("No VAT (O)", "0")]),
]
FISCAL_YEARS = range(2024, 2031)
CURRENCIES = {"EUR": ("Euro", "€", "978"), "GBP": ("Pound Sterling", "£", "826"), "USD": ("US Dollar", "$", "840"),
              "CHF": ("Swiss Franc", "CHF", "756")}
COUNTRIES = {
    "AT": "Austria", "BE": "Belgium", "CH": "Switzerland", "DE": "Germany", "DK": "Denmark", "ES": "Spain",
    "FI": "Finland", "FR": "France", "GB": "United Kingdom", "IE": "Ireland", "IT": "Italy",
    "LU": "Luxembourg", "NL": "Netherlands", "NO": "Norway", "PL": "Poland", "PT": "Portugal", "SE": "Sweden",
    "US": "United States", "CA": "Canada", "AU": "Australia", "JP": "Japan", "SG": "Singapore",
}


def main(conf: str, database: str) -> None:
    config = pconfig.set_trytond(database=database, config_file=conf)
    Currency = Model.get("currency.currency")
    Country = Model.get("country.country")
    Party = Model.get("party.party")
    Company = Model.get("company.company")
    User = Model.get("res.user")

    currencies = {}
    for code, (name, symbol, numeric) in CURRENCIES.items():
        found = Currency.find([("code", "=", code)])
        currency = found[0] if found else Currency(name=name, symbol=symbol, code=code, numeric_code=numeric,
                                                   rounding=Decimal("0.01"), digits=2)
        currency.save()
        currencies[code] = currency
    countries = {}
    for code, name in COUNTRIES.items():
        found = Country.find([("code", "=", code)])
        country = found[0] if found else Country(name=name, code=code)
        country.save()
        countries[code] = country

    companies = []
    for code, name, currency, country, vat_id, _taxes in COMPANIES:
        party = Party(name=name, code=f"BILLABLE-{code}")
        address = party.addresses[0] if party.addresses else party.addresses.new()
        address.country = countries[country]
        if vat_id:
            identifier = party.identifiers.new()
            identifier.type = "eu_vat" if country != "GB" else "gb_vat"
            identifier.code = vat_id
        party.save()
        company = Company(party=party, currency=currencies[currency], timezone="UTC")
        company.save()
        companies.append(company)

    admin, = User.find([("login", "=", "admin")])
    admin.companies.extend(Company(c.id) for c in companies)
    admin.company = Company(companies[0].id)
    # "All companies": record rules let the user see every company's records, and each call names its
    # company in the context (one user posts for all three entities, concurrently).
    admin.company_filter = "all"
    admin.save()
    config._context = User.get_preferences(True, {})

    from trytond.modules.account.tests.tools import create_chart, get_accounts

    for company, (code, _name, _cur, _country, _vat, taxes) in zip(companies, COMPANIES, strict=True):
        with config.set_context(company=company.id, companies=[company.id]):
            company = Company(company.id)
            create_chart(company=company, chart="account.account_template_root_en", config=config)
            accounts = get_accounts(company, config=config)
            # Taxes rounded once per document and tax (as Billable does), not line by line.
            Configuration = Model.get("account.configuration")
            configuration = Configuration(1)
            configuration.tax_rounding = "document"
            configuration.save()
            for year in FISCAL_YEARS:
                _fiscal_year(company, year, code)
            Tax = Model.get("account.tax")
            for tax_name, rate in taxes:
                tax = Tax(name=tax_name, description=tax_name, type="percentage", rate=Decimal(rate),
                          company=company, invoice_account=accounts["tax"], credit_note_account=accounts["tax"])
                tax.save()
            Journal = Model.get("account.journal")
            PaymentMethod = Model.get("account.invoice.payment.method")
            journal_cash, = Journal.find([("type", "=", "cash")], limit=1)
            method = PaymentMethod(name="Bank transfer", company=company, journal=journal_cash,
                                   credit_account=accounts["cash"], debit_account=accounts["cash"])
            method.save()
    print(f"template {database}: {len(companies)} companies set up")


def _fiscal_year(company, year: int, code: str) -> None:
    FiscalYear = Model.get("account.fiscalyear")
    Sequence = Model.get("ir.sequence.strict")
    SequenceType = Model.get("ir.sequence.type")
    move_type, = SequenceType.find([("name", "=", "Account Move")], limit=1)
    invoice_type, = SequenceType.find([("name", "=", "Invoice")], limit=1)
    move_sequence = Sequence(name=f"{code} moves {year}", sequence_type=move_type, company=company)
    move_sequence.save()
    out_invoice = Sequence(name=f"{code} invoices {year}", sequence_type=invoice_type, company=company,
                           prefix=f"{code}-INV-{year}-", padding=5)
    out_invoice.save()
    out_credit = Sequence(name=f"{code} credit notes {year}", sequence_type=invoice_type, company=company,
                          prefix=f"{code}-CRN-{year}-", padding=5)
    out_credit.save()
    supplier = Sequence(name=f"{code} supplier invoices {year}", sequence_type=invoice_type, company=company)
    supplier.save()
    fiscal_year = FiscalYear(name=f"{code} {year}", company=company, start_date=dt.date(year, 1, 1),
                             end_date=dt.date(year, 12, 31), move_sequence=move_sequence)
    seq, = fiscal_year.invoice_sequences
    seq.out_invoice_sequence = out_invoice
    seq.out_credit_note_sequence = out_credit
    seq.in_invoice_sequence = supplier
    seq.in_credit_note_sequence = supplier
    fiscal_year.save()
    fiscal_year.click("create_period")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
