"""Built-in tax rules of DESIGN §3.9; billing admins edit them in admin."""
from decimal import Decimal

from django.db import migrations

DOMESTIC = {"DE": "19", "FR": "20", "NL": "21", "GB": "20"}


def seed(apps, schema_editor):
    TaxRule = apps.get_model("billing", "TaxRule")
    rows = []
    for country, rate in DOMESTIC.items():
        rows.append(dict(entity_country=country, client_relation="domestic", category="S", rate=Decimal(rate)))
        if country != "GB":
            # EU B2C in another member state: the entity's domestic rate.
            rows.append(
                dict(entity_country=country, client_relation="eu_other", client_vat_registered=False,
                     category="S", rate=Decimal(rate))
            )
    rows += [
        dict(entity_country="EU", client_relation="eu_other", client_vat_registered=True, category="AE",
             rate=Decimal("0"), legal_note="Reverse charge: VAT to be accounted for by the recipient (Art. 196 VAT Directive)."),
        dict(entity_country="EU", client_relation="export", category="O", rate=Decimal("0"),
             legal_note="Service outside the scope of EU VAT (place of supply outside the EU)."),
        dict(entity_country="GB", client_relation="export", category="O", rate=Decimal("0"),
             legal_note="Outside the scope of UK VAT (place of supply outside the UK)."),
        dict(entity_country="US", client_relation="any", category="O", rate=Decimal("0"),
             legal_note="No VAT charged."),
    ]
    for row in rows:
        TaxRule.objects.get_or_create(
            entity_country=row.pop("entity_country"),
            client_relation=row.pop("client_relation"),
            client_country="",
            client_vat_registered=row.pop("client_vat_registered", None),
            active=True,
            defaults=row,
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
