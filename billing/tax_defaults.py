"""The built-in tax rules of docs/rules/billing.md §9 (seeded by migration billing/0002).

Billing admins edit the live rules in Django admin; `run_scenario` bills worked
examples against exactly these defaults.
"""

from __future__ import annotations

from decimal import Decimal

DOMESTIC_RATES = {"DE": Decimal("19"), "FR": Decimal("20"), "NL": Decimal("21"), "GB": Decimal("20")}

REVERSE_CHARGE_NOTE = "Reverse charge: VAT to be accounted for by the recipient (Art. 196 VAT Directive)."


def default_tax_rules() -> list[dict]:
    """Rows for TaxRule: entity country (or EU), client relation, VAT-registered flag, category, rate."""
    rows: list[dict] = []
    for country, rate in DOMESTIC_RATES.items():
        rows.append({"entity_country": country, "client_relation": "domestic", "category": "S", "rate": rate})
        if country != "GB":
            # EU client in another member state without a valid VAT id: the entity's domestic rate.
            rows.append(
                {
                    "entity_country": country,
                    "client_relation": "eu_other",
                    "client_vat_registered": False,
                    "category": "S",
                    "rate": rate,
                }
            )
    rows += [
        {
            "entity_country": "EU",
            "client_relation": "eu_other",
            "client_vat_registered": True,
            "category": "AE",
            "rate": Decimal("0"),
            "legal_note": REVERSE_CHARGE_NOTE,
        },
        {
            "entity_country": "EU",
            "client_relation": "export",
            "category": "O",
            "rate": Decimal("0"),
            "legal_note": "Services outside the scope of EU VAT (place of supply outside the EU).",
        },
        {
            "entity_country": "GB",
            "client_relation": "export",
            "category": "O",
            "rate": Decimal("0"),
            "legal_note": "Outside the scope of UK VAT (place of supply outside the UK).",
        },
        {
            "entity_country": "US",
            "client_relation": "any",
            "category": "O",
            "rate": Decimal("0"),
            "legal_note": "No VAT charged.",
        },
    ]
    return rows


def create_default_tax_rules(tax_rule_model) -> None:
    """Create the defaults that are missing (idempotent); works with historical models too."""
    for row in default_tax_rules():
        row = dict(row)
        tax_rule_model.objects.get_or_create(
            entity_country=row.pop("entity_country"),
            client_relation=row.pop("client_relation"),
            client_country="",
            client_vat_registered=row.pop("client_vat_registered", None),
            active=True,
            defaults=row,
        )
