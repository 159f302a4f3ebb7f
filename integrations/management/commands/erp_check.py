"""Check the ERP mappings of every legal entity against the ERP (Tryton adapter); optionally enter the demo's.

    manage.py erp_check                  each entity's ERP company, accounts and taxes resolve in the ERP?
    manage.py erp_check --demo-mappings  first enter the demo entities' mappings (make demo ERP=tryton)

Exit status 1 when a mapping does not resolve (run it at deployment, before turning posting on).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from billing.models import LegalEntity, TaxRule
from billing.vat import EU_MEMBER_STATES
from integrations.erp.base import get_adapter
from integrations.models import ErpEntityMapping, ErpTaxMapping


class Command(BaseCommand):
    help = "Check (and with --demo-mappings enter) the ERP company and tax mappings of the legal entities."

    def add_arguments(self, parser):
        parser.add_argument("--demo-mappings", action="store_true", help="Enter the demo entities' Tryton mappings.")

    def handle(self, *args, **options):
        from integrations.erp.tryton import DEMO_COMPANIES, DEMO_TAXES

        if options["demo_mappings"]:
            for entity in LegalEntity.objects.filter(code__in=DEMO_COMPANIES):
                ErpEntityMapping.objects.update_or_create(
                    entity=entity, defaults={"erp_company": DEMO_COMPANIES[entity.code]})
                for category, rate, name in DEMO_TAXES[entity.code]:
                    ErpTaxMapping.objects.update_or_create(entity=entity, category=category, rate=rate,
                                                          defaults={"erp_tax": name})
            self.stdout.write("Demo ERP mappings entered.")
        adapter = get_adapter()
        if not hasattr(adapter, "check_mappings"):
            self.stdout.write(f"{type(adapter).__name__} needs no mappings.")
            return
        problems = []
        for entity in LegalEntity.objects.order_by("code"):
            if not ErpEntityMapping.objects.filter(entity=entity).exists():
                problems.append(f"{entity.code}: no ERP company mapped.")
                continue
            problems += adapter.check_mappings([entity.code])
            mapped = {(m.category, m.rate) for m in ErpTaxMapping.objects.filter(entity=entity)}
            countries = [entity.country, *(["EU"] if entity.country in EU_MEMBER_STATES else [])]
            rules = TaxRule.objects.filter(active=True, entity_country__in=countries)
            for category, rate in sorted({(r.category, r.rate.quantize(Decimal("0.01"))) for r in rules}):
                if (category, rate) not in mapped:
                    problems.append(f"{entity.code}: tax {category} {rate}% of the tax rules has no ERP tax mapped.")
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} ERP mapping problem(s).")
        self.stdout.write(self.style.SUCCESS("Every entity's ERP mapping resolves."))
