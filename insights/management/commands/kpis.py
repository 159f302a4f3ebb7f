"""`manage.py kpis --period-start 2026-01-01 --period-end 2026-10-31 [--entity NWB] [--json]`.

The KPIs of docs/rules/kpis.md."""

from __future__ import annotations

import datetime
import json

from django.core.management.base import BaseCommand, CommandError

from insights import selectors
from insights.params import parse_filters


class Command(BaseCommand):
    help = "Print the process KPIs (one key per metric) for a period, optionally filtered; --json for machines."

    def add_arguments(self, parser):
        parser.add_argument("--period-start", required=True, help="ISO date, first day of the period.")
        parser.add_argument("--period-end", required=True, help="ISO date, last day of the period (inclusive).")
        parser.add_argument("--entity", help="Legal entity code.")
        parser.add_argument("--client", help="Client code.")
        parser.add_argument("--business-unit", help="Project business unit (practice).")
        parser.add_argument("--metric", action="append", choices=list(selectors.METRICS),
                            help="Only this metric (repeatable).")
        parser.add_argument("--json", action="store_true", help="JSON on stdout (dates ISO, amounts as strings).")

    def handle(self, *args, **options):
        try:
            start = datetime.date.fromisoformat(options["period_start"])
            end = datetime.date.fromisoformat(options["period_end"])
        except ValueError as error:
            raise CommandError(f"Dates are ISO dates (YYYY-MM-DD): {error}") from error
        if end < start:
            raise CommandError("--period-end is before --period-start.")
        f = parse_filters({"period_start": start, "period_end": end, "entity": options.get("entity"),
                           "client": options.get("client"), "business_unit": options.get("business_unit")})
        result = selectors.jsonable(selectors.kpis(
            f.period_start, f.period_end, metrics=options.get("metric"), entity=f.entity, client=f.client,
            business_unit=f.business_unit,
        ))
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, ensure_ascii=False))
            return
        self.stdout.write(f"KPIs {f.period_start} – {f.period_end} (as of {result['filters']['as_of']})")
        for key, value in result.items():
            if key == "filters":
                continue
            self.stdout.write(f"\n{selectors.TITLES[key]} [{key}]")
            self.stdout.write("  " + _headline(key, value))


def _headline(key: str, v: dict) -> str:
    if key in ("days_to_invoice", "billing_cycle_time", "approval_latency"):
        unit = v.get("unit", "")
        return f"n={v['n']} median={v['median']} {unit} p90={v['p90']} {unit}"
    if key == "first_pass_accuracy":
        return f"{v['pct']}% clean ({v['clean']} of {v['issued']} issued)"
    if key == "exception_rate":
        codes = ", ".join(f"{r['code']} {r['rate_pct']}%" for r in v["by_code"][:6])
        return f"{v['drafted']} invoices drafted; {codes or 'no exceptions'}"
    if key == "disputes":
        return f"{v['opened']} opened ({v['frequency_pct']}% of invoices issued); {v['live']} live"
    if key == "credit_notes":
        return f"{v['count']} credit notes; " + ", ".join(f"{r['amount']} {r['currency']}" for r in v["by_currency"])
    if key == "dso":
        return f"DSO {v['dso']} days (AR {v['ar']} {v['reporting_currency']})"
    if key == "ar_aging":
        return ", ".join(f"{b['bucket']}: {b['amount']}" for b in v["reporting_totals"]) + f" {v['reporting_currency']}"
    if key == "leakage":
        return (f"{v['unbilled_time']['hours']} h unbilled > {v['days_after_period_end']} days after period end; "
                f"{len(v['write_downs'])} currencies with write-downs; {v['late_time']['entries_late']} late entries")
    if key == "cash_forecast":
        return (f"{v['total']} {v['reporting_currency']} expected in 13 weeks; at risk {v['at_risk']}; "
                f"MAPE {v['mape_pct']}%")
    return json.dumps(v)[:200]
