"""Upload size limits: an oversized request is answered 413 from its Content-Length, before its body is read."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse

from billing.models import ChangeOrder, Expense
from disputes.models import DisputeNote
from insights.models import SowReading
from integrations.models import ImportBatch
from portal.uploads import RequestSizeLimitMiddleware
from tests.factories import ChangeOrderFactory, ContractFactory, UserFactory

pytestmark = pytest.mark.django_db

LIMIT = 4096


@pytest.fixture
def small_limits(settings):
    settings.UPLOAD_MAX_BYTES = LIMIT
    settings.UPLOAD_FORM_OVERHEAD_BYTES = 1024
    settings.UPLOAD_MAX_BYTES_BY_PATH = {"/integrations/imports/": LIMIT // 2}
    return settings


def _big(name: str, size: int = 3 * LIMIT, content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, b"x" * size, content_type=content_type)


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


def _endpoints():
    """Every upload endpoint (grep FileField / request.FILES): URL builder, field name, file name, rows it writes."""
    return {
        "sow": (lambda: reverse("insights:sow_upload", args=[ContractFactory().pk]), "document", "sow.pdf",
                SowReading),
        "receipt": (lambda: reverse("approvals:expense_new"), "receipt", "receipt.pdf", Expense),
        "csv_import": (lambda: reverse("integrations:import_upload"), "file", "time.csv", ImportBatch),
        "dispute_attachment": (lambda: reverse("disputes:dispute_note", args=[1]), "attachment", "proof.pdf",
                               DisputeNote),
        "signed_change_order": (lambda: reverse("admin:billing_changeorder_change",
                                                args=[ChangeOrderFactory().pk]), "signed_document", "signed.pdf",
                                None),
    }


@pytest.mark.parametrize("endpoint", sorted(_endpoints()))
def test_every_upload_endpoint_answers_413_with_a_clear_message_and_saves_nothing(client, superuser, small_limits,
                                                                                   endpoint):
    url_of, field, name, model = _endpoints()[endpoint]
    url = url_of()
    client.force_login(superuser)
    before = model.objects.count() if model else None
    signed_before = list(ChangeOrder.objects.values_list("signed_document", flat=True))
    response = client.post(url, {field: _big(name), "text": "note", "code": "CO-X"})
    assert response.status_code == 413
    html = response.content.decode()
    assert "The upload is too large (12 kB). A file may be at most" in html and "nothing was saved" in html
    if model:
        assert model.objects.count() == before
    assert list(ChangeOrder.objects.values_list("signed_document", flat=True)) == signed_before


def test_a_file_under_the_limit_reaches_the_view(client, superuser, small_limits):
    client.force_login(superuser)
    response = client.post(reverse("insights:sow_upload", args=[ContractFactory().pk]),
                           {"document": _big("sow.docx", size=100)})
    assert response.status_code == 200 and "Upload a PDF or a .txt file." in response.content.decode()


def test_the_csv_import_has_its_own_lower_limit(client, superuser, small_limits):
    client.force_login(superuser)
    just_over = LIMIT // 2 + 1024 + 512  # under the general limit, over the import's
    response = client.post(reverse("integrations:import_upload"), {"file": _big("t.csv", size=just_over)})
    assert response.status_code == 413 and "A file may be at most 2 kB" in response.content.decode()


def test_the_api_answers_413_in_its_error_shape(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = json.dumps({"external_id": "x", "description": "y" * 4096})
    response = client.post("/api/v1/time-entries/", body, content_type="application/json",
                           HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 413
    assert response.json() == {"code": "request_too_large", "field_errors": {},
                               "message": "The upload is too large (4 kB). A request may carry at most 1 kB; nothing "
                               "was saved."}


class _Unreadable(io.RawIOBase):
    def read(self, *args):  # pragma: no cover - reaching it fails the test
        raise AssertionError("the body was read")

    readinto = read


def test_the_body_is_never_read(small_limits):
    request = RequestFactory().post("/insights/contracts/1/sow/upload/", data=b"", content_type="multipart/form-data; "
                                    "boundary=xyz")
    request.META["CONTENT_LENGTH"] = str(50 * 1024 * 1024)
    request.META["wsgi.input"] = _Unreadable()
    request._stream = _Unreadable()
    request.user = UserFactory()
    called = []
    response = RequestSizeLimitMiddleware(lambda r: called.append(r) or HttpResponse())(request)
    assert response.status_code == 413 and called == []
