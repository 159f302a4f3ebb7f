"""The CSV time import in a real browser: an analyst checks the PSA export (dry run), then imports it.

Uses the browser fixtures of tests/browser.py (Debian's /usr/bin/chromium); skipped without Chromium.
`E2E_SCREENSHOT_DIR=/tmp/shots` keeps screenshots.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from billing.models import TimeEntry
from tests.factories import DEFAULT_PASSWORD, PersonFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SAMPLE = Path(__file__).resolve().parents[3] / "docs" / "samples" / "psa_time_export.csv"


def test_dry_run_then_import_the_checked_file(e2e_settings, new_page, shoot, tmp_path):
    e2e_settings.MEDIA_ROOT = str(tmp_path)
    from approvals.services.defaults import ensure_approval_defaults

    ensure_approval_defaults()
    for code in ("PRJ-ROLLOUT", "PRJ-AUDIT"):
        ProjectFactory(code=code)
    PersonFactory(code="P-0001", source="psa", external_id="E-1001", email="lena.hoffmann@nordwind.example")
    PersonFactory(code="P-0002", source="psa", external_id="E-1002", email="tom.baker@nordwind.example")
    UserFactory(username="analyst", groups=["finance_analyst"], is_staff=True)

    page = new_page()
    page.goto("/accounts/login/?next=/integrations/imports/upload/")
    page.get_by_label("Username").fill("analyst")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/integrations/imports/upload/$"))
    shoot(page, "import-upload")

    page.get_by_label("PSA time export (CSV)").set_input_files(str(SAMPLE))
    page.get_by_role("button", name="Check (dry run)").click()
    page.wait_for_url(re.compile(r"/integrations/imports/\d+/$"))
    expect(page.get_by_text("Dry run checked 6 rows: 6 new")).to_be_visible()
    assert TimeEntry.objects.count() == 0
    shoot(page, "import-dry-run")

    page.get_by_role("button", name="Import 6 rows").click()
    expect(page.get_by_text("Imported 6 rows: 6 new")).to_be_visible()
    assert TimeEntry.objects.count() == 6
    shoot(page, "import-done")
    page.get_by_role("navigation", name="Integration screens").get_by_role("link", name="Imports").click()
    expect(page.get_by_role("cell", name="psa_time_export.csv").first).to_be_visible()
    shoot(page, "import-list")
