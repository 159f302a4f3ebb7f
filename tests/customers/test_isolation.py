"""The customer portal's authorization matrix: every /customer/ URL × contact of client A × contact of client B ×
anonymous × a staff user. Client A owns every object; B must get nothing (404 or a page without A's data), the
anonymous visitor the customer login, staff 403. Every URL of the `customers` namespace must be listed here."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import get_resolver, reverse

from billing.models import ChangeOrder, Milestone
from customers.models import MilestoneSignoff, SignedDocument
from disputes.models import DisputeNote
from tests.customers.factories import PASSWORD
from tests.customers.world import build_world
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

#: name → (target object or None, method, kind). kind: "page" (contact_view), "public", "webhook".
URLS = {
    "home": (None, "GET", "page"),
    "statement": (None, "GET", "page"),
    "disputes": (None, "GET", "page"),
    "change_orders": (None, "GET", "page"),
    "milestones": (None, "GET", "page"),
    "mfa": (None, "GET", "page"),
    "invoice": ("invoice", "GET", "page"),
    "invoice_pdf": ("invoice", "GET", "page"),
    "invoice_ubl": ("invoice", "GET", "page"),
    "dispute_new": ("invoice", "POST", "page"),
    "dispute": ("dispute", "GET", "page"),
    "dispute_note": ("dispute", "POST", "page"),
    "dispute_attachment": ("note", "GET", "page"),
    "change_order": ("change_order", "GET", "page"),
    "change_order_pdf": ("change_order", "GET", "page"),
    "change_order_sign": ("change_order", "POST", "page"),
    "change_order_decline": ("change_order", "POST", "page"),
    "milestone_signoff": ("milestone", "POST", "page"),
    "login": (None, "GET", "public"),
    "login_verify": (None, "GET", "public"),
    "logout": (None, "POST", "public"),
    "password_reset": (None, "GET", "public"),
    "set_password": ("token", "GET", "public"),
    "esign_webhook": (None, "POST", "webhook"),
}


def test_every_customer_url_is_in_the_matrix():
    names = {name for name in get_resolver().namespace_dict["customers"][1].reverse_dict if isinstance(name, str)}
    assert names == set(URLS)


def _url(world, name: str) -> str:
    target = URLS[name][0]
    if target is None:
        return reverse(f"customers:{name}")
    if target == "token":
        return reverse(f"customers:{name}", args=["not-a-valid-token"])
    return reverse(f"customers:{name}", args=[world.target(target).pk])


def _body(world, name: str) -> dict:
    lines = {f"line_{line.pk}": "on" for line in world.invoice.lines.all()[:1]}
    return {
        "dispute_new": {"category": "rate", "description": "Again", **lines},
        "dispute_note": {"text": "Hello"},
        "change_order_sign": {"signer_name": "Mallory", "agree": "on"},
        "change_order_decline": {"reason": "No"},
        "milestone_signoff": {"comment": "ok"},
    }.get(name, {})


def _state(world) -> tuple:
    return (
        DisputeNote.objects.count(),
        SignedDocument.objects.count(),
        MilestoneSignoff.objects.count(),
        ChangeOrder.objects.get(pk=world.change_order.pk).envelopes.filter(status="sent").count(),
        Milestone.objects.get(pk=world.milestone.pk).status,
    )


def _session(contact) -> Client:
    c = Client()
    assert c.post("/customer/login/", {"email": contact.email, "password": PASSWORD}).status_code == 302
    return c


@pytest.fixture
def world():
    return build_world()


def test_the_matrix(world):
    a, b, anon = _session(world.a), _session(world.b), Client()
    staff = Client()
    staff.force_login(UserFactory(username="fc", groups=["finance_controller"]))
    secrets = world.secrets()
    failures = []

    def request(c: Client, name: str):
        url, method = _url(world, name), URLS[name][1]
        return c.get(url) if method == "GET" else c.post(url, _body(world, name))

    for name, (target, method, kind) in URLS.items():
        # Client B first: nothing of A's, and nothing changes.
        before = _state(world)
        response = request(b, name)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        if kind == "page" and target is not None and response.status_code != 404:
            failures.append(f"B {method} {name}: {response.status_code}, expected 404")
        leaked = [s for s in secrets if s.encode() in body]
        if leaked:
            failures.append(f"B {method} {name}: shows {leaked}")
        if _state(world) != before:
            failures.append(f"B {method} {name}: changed {before} → {_state(world)}")
        # Anonymous: the customer login, nothing shown, nothing changed.
        response = request(anon, name)
        if kind == "page":
            if response.status_code != 302 or not response["Location"].startswith("/customer/login/"):
                failures.append(f"anon {method} {name}: {response.status_code}")
        elif kind == "webhook" and response.status_code != 403:
            failures.append(f"anon POST {name}: {response.status_code}, expected 403")
        if any(s.encode() in response.content for s in secrets):
            failures.append(f"anon {method} {name}: leaks")
        # Staff: 403 on every customer page.
        if kind == "page":
            response = request(staff, name)
            if response.status_code != 403:
                failures.append(f"staff {method} {name}: {response.status_code}, expected 403")
        if _state(world) != before:
            failures.append(f"anon/staff {method} {name}: changed the state")

    # Client A: every page of their own answers (GET 200; POST redirects back).
    for name, (_target, method, kind) in URLS.items():
        if kind != "page" or method != "GET":
            continue
        response = request(a, name)
        if response.status_code != 200:
            failures.append(f"A GET {name}: {response.status_code}")
    home = a.get("/customer/").content.decode()
    assert world.invoice.number in home
    assert not failures, "\n".join(failures)
