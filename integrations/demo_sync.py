"""Demo data of the inbound sync: one checked PSA time export waiting to be imported (idempotent).

`seed_demo_sync` makes a dry run of a small PSA export (two hours for six people on active
projects, on the first Monday after the demo's time) under the demo analyst, so the Imports
page shows a checked file with its "Import 6 rows" button. Nothing else changes: a dry run
saves no time. Meant to be called from `integrations.demo.seed_demo_extension`.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable

DEMO_FILE = "demo_psa_week.csv"


def seed_demo_sync(*, log: Callable[[str], None] = print) -> Counter:
    from django.contrib.auth import get_user_model
    from django.db.models import Max

    from billing.models import Contract, Person, Project, TimeEntry
    from integrations.models import ImportBatch
    from integrations.services.csv_import import import_time_csv

    made: Counter = Counter()
    if ImportBatch.objects.filter(kind=ImportBatch.Kind.CSV_TIME, filename=DEMO_FILE).exists():
        return made
    last = TimeEntry.objects.aggregate(last=Max("date"))["last"] or datetime.date(2026, 10, 30)
    day = last + datetime.timedelta(days=7 - last.weekday())  # the next Monday
    projects = list(Project.objects.filter(status=Project.Status.ACTIVE, contract__status=Contract.Status.ACTIVE)
                    .order_by("code")[:6])
    people = list(Person.objects.filter(active=True).order_by("code")[:6])
    if not projects or not people:
        return made
    rows = ["external_id,person_code,project_code,date,hours,billable,description"]
    for i, person in enumerate(people):
        project = projects[i % len(projects)]
        rows.append(f"DEMO-{day:%Y%m%d}-{i + 1:03d},{person.code},{project.code},{day.isoformat()},2,true,"
                    "Status meeting and follow-up")
    analyst = get_user_model()._default_manager.filter(username="analyst").first()
    outcome = import_time_csv(content=("\n".join(rows) + "\n").encode(), filename=DEMO_FILE, user=analyst,
                              source="psa", dry_run=True)
    made["checked PSA export"] += 1
    log(f"Inbound sync: {DEMO_FILE} checked ({outcome.summary()['created']} rows ready to import)")
    return made
