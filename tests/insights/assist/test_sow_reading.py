"""SOW PDFs are read in a django-q2 task, in a child process with a page cap and a time limit (issue #12, finding 5).

The pathological PDFs are built here with pypdf: many pages sharing one content stream, the shape that
took ~11 s of CPU inside a web request's transaction before.
"""

from __future__ import annotations

import io
import re
import tomllib
from pathlib import Path
from unittest import mock

import pytest
from django.db import connection
from django.urls import reverse

from billing.models import Contract
from insights.models import SowReading, SowSuggestion
from insights.services import sow as sow_service
from insights.services.sow import sow_read, sow_upload
from insights.tasks import read_sow_task
from tests.factories import ContractFactory, RoleFactory, UserFactory

ROOT = Path(__file__).resolve().parents[3]


def shared_stream_pdf(pages: int, operations: int) -> bytes:
    """`pages` pages whose /Contents is one and the same (compressed) stream of `operations` text operations."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    stream = DecodedStreamObject()
    stream.set_data(b"BT /F1 12 Tf 72 720 Td " + b"(Payment terms: Net 30.) Tj 0 -1 Td " * operations + b"ET")
    contents = writer._add_object(stream.flate_encode())
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }))
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = contents
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def analyst(db):
    return UserFactory(groups=["finance_analyst"])


@pytest.fixture
def contract(db, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    RoleFactory(code="SENIOR", name="Senior consultant")
    return ContractFactory(status=Contract.Status.DRAFT, payment_terms_days=None)


def test_the_pdf_reader_is_a_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [re.split(r"[=<>\[ ]", d)[0] for d in project["dependencies"]]
    dev = [re.split(r"[=<>\[ ]", d)[0] for d in project["optional-dependencies"]["dev"]]
    assert "pypdfium2" in runtime and "pypdfium2" not in dev


def test_the_upload_only_queues_the_reading_and_the_page_says_reading(client, contract, analyst):
    client.force_login(analyst)
    pdf = shared_stream_pdf(pages=3, operations=5)
    with mock.patch("insights.services.sow.read_pdf_limited") as read:
        from django.core.files.uploadedfile import SimpleUploadedFile

        response = client.post(reverse("insights:sow_upload", args=[contract.pk]),
                               {"document": SimpleUploadedFile("sow.pdf", pdf, content_type="application/pdf")})
        read.assert_not_called()  # not in the web request
    assert response.status_code == 302
    reading = SowReading.objects.get(contract=contract)
    assert (reading.status, reading.document_name) == ("queued", "sow.pdf")
    page = client.get(response["Location"])
    html = page.content.decode()
    assert "sow.pdf received: reading it." in html and "Reading…" in html
    poll = reverse("insights:sow_reading", args=[reading.pk])
    assert f'hx-get="{poll}"' in html and 'hx-trigger="every 2s"' in html
    assert "<script>" not in html and "<script " not in html.replace('<script src="', "")  # static JS only
    fragment = client.get(poll, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and "HX-Refresh" not in fragment and "Reading…" in fragment.content.decode()


def test_a_pdf_with_too_many_pages_sharing_one_stream_fails_its_reading_with_a_message(
    client, contract, analyst, settings
):
    settings.INSIGHTS_SOW_MAX_PAGES = 50
    pdf = shared_stream_pdf(pages=2000, operations=200)
    assert len(pdf) < 400_000  # small file, huge parse: the case of finding 5
    reading = sow_upload(contract=contract, name="bomb.pdf", content=pdf, user=analyst)
    reading = sow_read(reading_id=reading.pk)
    assert reading.status == "failed" and reading.suggestions_created == 0
    assert reading.message == ("The PDF has 2000 pages; at most 50 are read. Upload the pages with the commercial "
                               "terms (or a text file).")
    assert not SowSuggestion.objects.filter(contract=contract).exists()
    client.force_login(analyst)
    fragment = client.get(reverse("insights:sow_reading", args=[reading.pk]), HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true"  # polling ends: the page reloads with the outcome
    html = client.get(reverse("insights:sow_review", args=[contract.pk])).content.decode()
    assert "bomb.pdf could not be read: The PDF has 2000 pages" in html and "hx-get" not in html


def test_a_pdf_under_the_page_cap_that_reads_too_long_is_stopped_at_the_time_limit(contract, analyst, settings):
    settings.INSIGHTS_SOW_READ_SECONDS = 1
    pdf = shared_stream_pdf(pages=40, operations=100_000)  # 5 s of extraction on a quiet 2-core machine
    reading = sow_upload(contract=contract, name="slow.pdf", content=pdf, user=analyst)
    reading = sow_read(reading_id=reading.pk)
    assert reading.status == "failed"
    assert reading.message.startswith("Reading the PDF took longer than 1 seconds and was stopped.") or (
        reading.message.startswith("Reading the PDF was stopped")  # the CPU limit struck first
    )


def test_a_good_pdf_is_read_by_the_task_and_its_terms_suggested(contract, analyst):
    pdf = shared_stream_pdf(pages=2, operations=1)
    reading = sow_upload(contract=contract, name="ok.pdf", content=pdf, user=analyst)
    result = read_sow_task(reading.pk)
    assert result["status"] == "done" and result["suggestions"] == 1
    reading.refresh_from_db()
    assert (reading.pages, reading.suggestions_created) == (2, 1)
    assert SowSuggestion.objects.get(contract=contract).value == "30"
    assert read_sow_task(reading.pk)["suggestions"] == 1  # a retried task reads nothing twice
    assert SowSuggestion.objects.filter(contract=contract).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_pdf_is_parsed_outside_any_transaction_and_without_a_lock(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    contract = ContractFactory(status=Contract.Status.DRAFT)
    analyst = UserFactory(groups=["finance_analyst"])
    reading = sow_upload(contract=contract, name="ok.pdf", content=shared_stream_pdf(2, 1), user=analyst)
    seen = []
    real = sow_service.read_pdf_limited

    def spy(content):
        seen.append(connection.in_atomic_block)
        return real(content)

    with mock.patch.object(sow_service, "read_pdf_limited", spy):
        assert sow_read(reading_id=reading.pk).status == "done"
    assert seen == [False]


def test_a_reading_whose_worker_died_says_so_instead_of_polling_forever(client, contract, analyst):
    reading = SowReading.objects.create(contract=contract, document="contracts/sow/x.pdf", document_name="x.pdf",
                                        status="reading")
    SowReading.objects.filter(pk=reading.pk).update(started_at="2020-01-01T00:00:00Z")
    client.force_login(analyst)
    html = client.get(reverse("insights:sow_review", args=[contract.pk])).content.decode()
    assert "stopped without an answer" in html and "hx-get" not in html
