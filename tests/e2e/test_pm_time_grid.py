"""The PM's time grid holds several entries a day inside the day's cell, in a real browser.

Before: entries of one day sat side by side ("1.75 4.25") in a fixed-layout table and spilled
over the next days' columns; a week of 13 entries ran past Friday. Now each day's entries
stack in its cell with their sum: every entry's box lies within its own day's column.

Run: `pytest tests/e2e/test_pm_time_grid.py` (Playwright + Debian's /usr/bin/chromium).
"""
from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest

from billing.services.work import time_entry_create, work_submit
from tests.factories import DEFAULT_PASSWORD, PersonFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MONDAY = datetime.date(2026, 10, 26)
#: 13 entries in one week: four on Monday, three on Tuesday, two each on Wednesday to Friday.
WEEK = {0: ["1.75", "4.25", "0.50", "1.50"], 1: ["2.00", "3.25", "2.75"], 2: ["4.00", "4.00"],
        3: ["6.50", "1.50"], 4: ["7.75", "0.25"]}

#: Every entry (its hours, an own-work span, the day's sum) whose box leaves its day's column.
OVERFLOW = """() => {
  const out = [];
  for (const table of document.querySelectorAll('table.ap-week-table')) {
    const heads = [...table.tHead.rows[0].cells].map(c => c.getBoundingClientRect());
    for (const row of table.tBodies[0].rows) {
      [...row.cells].forEach((cell, i) => {
        const col = heads[i];
        for (const el of cell.querySelectorAll('summary, .ap-cell-entry, .ap-cell-sum')) {
          const r = el.getBoundingClientRect();
          if (r.left < col.left - 0.5 || r.right > col.right + 0.5) {
            out.push(`${el.textContent.trim()} in column ${i}: ${r.left}-${r.right} outside ${col.left}-${col.right}`);
          }
        }
      });
    }
  }
  return out;
}"""


def test_a_week_of_13_entries_stays_within_monday_to_sunday(new_page, live_server, e2e_settings):
    pm = UserFactory(username="grid-pm", groups=["project_manager"])
    project = ProjectFactory(project_manager=pm, code="PRJ-GRID", name="A project with a long name to squeeze")
    person = PersonFactory(name="Gina Grid")
    for offset, hours_list in WEEK.items():
        for hours in hours_list:
            entry = time_entry_create(
                person=person, project=project, date=MONDAY + datetime.timedelta(days=offset), hours=Decimal(hours),
                description="Workshop", user=person.user,
            )
            work_submit(item=entry, user=person.user)

    for width in (1440, 1024):
        page = new_page()
        page.set_viewport_size({"width": width, "height": 900})
        page.goto("/accounts/login/?next=/approvals/time/")
        page.get_by_label("Username").fill("grid-pm")
        page.get_by_label("Password").fill(DEFAULT_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/approvals/time/$"))

        table = page.locator("table.ap-week-table")
        assert table.locator("summary").count() == 13
        assert page.evaluate(OVERFLOW) == [], f"entries spill out of their day at {width} px"
        monday = table.locator("tbody tr").first.locator("td").first
        assert monday.locator("summary").count() == 4
        assert monday.locator(".ap-cell-sum").inner_text() == "= 8"  # 1.75 + 4.25 + 0.50 + 1.50
        assert table.locator("tfoot td").nth(0).inner_text() == "8"
