"""The import pages: who may open them, dry run then import, errors with line numbers, bounded queries."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import TimeEntry
from integrations.models import ImportBatch
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CSV = (b"external_id,person_external_id,project_code,date,hours,description\n"
       b"psa-1,psa-anna,PRJ-A,2025-03-10,6,Workshop\n"
       b"psa-2,psa-ben,PRJ-A,2025-03-10,5,Review\n")
BAD = CSV + b"psa-3,psa-anna,PRJ-A,2025-03-10,30,Too much\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def login(client, role):
    user = UserFactory(username=f"u-{role}", groups=[role], is_staff=True)
    client.force_login(user)
    return user


def upload(client, content, **data):
    return client.post(reverse("integrations:import_upload"),
                       {"file": SimpleUploadedFile("week.csv", content, content_type="text/csv"), "source": "psa",
                        **data})


@pytest.mark.parametrize(("role", "status"), [("finance_analyst", 200), ("finance_controller", 200),
                                              ("auditor", 403), ("project_manager", 403), ("consultant", 403)])
def test_who_may_upload(client, world, role, status):
    login(client, role)
    assert client.get(reverse("integrations:import_upload")).status_code == status
    assert upload(client, CSV, action="import").status_code in ((302,) if status == 200 else (403,))
    assert TimeEntry.objects.count() == (2 if status == 200 else 0)


def test_dry_run_then_import_from_the_result_page(client, world):
    analyst = login(client, "finance_analyst")
    response = upload(client, CSV, action="dry_run")
    dry = ImportBatch.objects.get()
    assert response.url == reverse("integrations:import_detail", args=[dry.pk])
    assert not TimeEntry.objects.exists() and dry.status == "dry_run"

    page = client.get(response.url)
    assert b"Dry run checked 2 rows: 2 new" in page.content and b"Import 2 rows" in page.content

    response = client.post(reverse("integrations:import_confirm", args=[dry.pk]))
    real = ImportBatch.objects.exclude(pk=dry.pk).get()
    assert response.url == reverse("integrations:import_detail", args=[real.pk])
    assert (real.status, real.submitted_by, TimeEntry.objects.count()) == ("done", analyst, 2)
    assert b"Imported 2 rows" in client.get(response.url).content


def test_errors_are_shown_with_their_lines_and_nothing_is_saved(client, world):
    login(client, "finance_controller")
    response = upload(client, BAD, action="import")
    page = client.get(response.url)
    assert b"Nothing imported" in page.content and b"Nothing saved" in page.content
    assert b'<td class="num">4</td>' in page.content and b"psa-3" in page.content
    assert b"Import 3 rows" not in page.content
    assert not TimeEntry.objects.exists()


def test_auditors_read_the_history_but_cannot_import_a_checked_file(client, world):
    login(client, "finance_analyst")
    upload(client, CSV, action="dry_run")
    dry = ImportBatch.objects.get()
    login(client, "auditor")
    assert client.get(reverse("integrations:import_list")).status_code == 200
    page = client.get(reverse("integrations:import_detail", args=[dry.pk]))
    assert page.status_code == 200 and b"Import 2 rows" not in page.content
    assert client.post(reverse("integrations:import_confirm", args=[dry.pk])).status_code == 403
    assert not TimeEntry.objects.exists()


def test_a_bad_upload_says_why(client, world):
    login(client, "finance_analyst")
    assert client.post(reverse("integrations:import_upload"), {"source": "psa"}).status_code == 400
    response = upload(client, b"hours,colour\n1,red\n", action="dry_run")
    assert b"missing columns" in client.get(response.url).content


def test_history_queries_do_not_grow_with_imports(client, world, django_assert_max_num_queries):
    login(client, "finance_analyst")
    upload(client, CSV, action="dry_run")
    with CaptureQueriesContext(connection) as few:
        response = client.get(reverse("integrations:import_list"))
    baseline = len(few)
    assert response.status_code == 200 and 0 < baseline <= 12, (response.status_code, baseline)
    for _ in range(6):
        upload(client, BAD, action="dry_run")
    with django_assert_max_num_queries(baseline):
        assert client.get(reverse("integrations:import_list")).status_code == 200
