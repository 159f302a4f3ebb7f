"""The user mix of `make loadtest` (bench/loadtest.py runs it headless; see bench/README.md).

Every simulated user signs in with a session prepared by `bench.loadtest` (MFA passed where the
role needs it) and works like the people of the firm: consultants open and save their week,
PMs open their queue and approve a week or a milestone, analysts work the exception queue and the
invoice pages, controllers open their approval queue and requests, collections look at the aging
and client statements, API clients upsert time and read invoices. `Floor` requests an empty Django
view served by the same stack (middleware, session, gunicorn): the floor of a page.

Forms are posted as a browser posts them: the page is read, its form's fields (CSRF token
included) are sent back.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
from datetime import date, timedelta
from html.parser import HTMLParser

from locust import HttpUser, between, task

with open(os.environ.get("LOADTEST_FIXTURES", "var/loadtest/fixtures.json")) as _fixtures:
    FIXTURES = json.load(_fixtures)

# Simulated users of a role sign in as its people in turn, as a firm's two controllers are two people:
# a random pick could make both controllers one person, who may never decide the step after their own.
_TURNS: dict[str, itertools.count] = {}


def next_session(role: str) -> tuple[int, str]:
    """The next of the role's prepared sessions (round robin): its index and key."""
    sessions = FIXTURES["sessions"][role]
    index = next(_TURNS.setdefault(role, itertools.count())) % len(sessions)
    return index, sessions[index]


class _Forms(HTMLParser):
    """The POST forms of a page: action and the fields a browser would send (no buttons)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._current: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "form" and (attributes.get("method") or "").lower() == "post":
            self._current = {"action": attributes.get("action") or "", "fields": []}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and attributes.get("name"):
            kind = (attributes.get("type") or "text").lower()
            if kind in {"submit", "button", "file"} or (kind == "checkbox" and "checked" not in attributes):
                return
            self._current["fields"].append((attributes["name"], attributes.get("value") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def post_forms(html: str, action: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return [form for form in parser.forms if re.search(action, form["action"])]


class PortalUser(HttpUser):
    abstract = True
    wait_time = between(0.5, 2.0)
    role = ""

    def on_start(self) -> None:
        self.client.cookies.set("sessionid", next_session(self.role)[1])

    def page(self, url: str, name: str) -> str:
        with self.client.get(url, name=name, catch_response=True, allow_redirects=False) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return ""
            return response.text

    def submit(self, form: dict, name: str, referer: str, extra: list | None = None) -> None:
        fields = list(form["fields"]) + list(extra or [])
        token = next((value for key, value in fields if key == "csrfmiddlewaretoken"), "")
        with self.client.post(
            form["action"],
            data=fields,
            name=name,
            catch_response=True,
            allow_redirects=False,
            headers={"X-CSRFToken": token, "Referer": self.host + referer},
        ) as response:
            if response.status_code not in (200, 302, 303):
                response.failure(f"HTTP {response.status_code}")


class Consultant(PortalUser):
    weight = 4
    role = "consultant"

    def on_start(self) -> None:
        index, key = next_session(self.role)
        self.client.cookies.set("sessionid", key)
        self.week = f"/approvals/timesheet/?week={FIXTURES['consultant_weeks'][index]}"

    @task(3)
    def open_week(self) -> None:
        self.page(self.week, "timesheet")

    @task(2)
    def save_week(self) -> None:
        html = self.page(self.week, "timesheet")
        forms = post_forms(html, r"/approvals/timesheet/$")
        if not forms:
            return
        form = forms[0]
        cells = [i for i, (key, value) in enumerate(form["fields"]) if key.startswith("h-")]
        if cells:  # change one editable cell of the week, as a consultant does
            index = random.choice(cells)
            key, _ = form["fields"][index]
            form["fields"][index] = (key, random.choice(["1", "2", "4", "7.5", "8"]))
        self.submit(form, "timesheet save", self.week, extra=[("action", "save")])


class ProjectManager(PortalUser):
    weight = 3
    role = "pm"

    @task(3)
    def open_time_queue(self) -> None:
        self.page("/approvals/time/", "pm time queue")

    @task(2)
    def approve_week(self) -> None:
        html = self.page("/approvals/time/", "pm time queue")
        forms = post_forms(html, r"approve-week")
        if forms:
            self.submit(random.choice(forms), "pm approve week", "/approvals/time/")
        else:  # this PM has decided every week: the next PM of the firm signs in
            self.client.cookies.set("sessionid", next_session(self.role)[1])

    @task(2)
    def milestones(self) -> None:
        html = self.page("/approvals/milestones/", "pm milestones")
        forms = post_forms(html, r"/milestones/\d+/approve/")
        if forms and random.random() < 0.5:
            self.submit(forms[0], "pm approve milestone", "/approvals/milestones/")


class Analyst(PortalUser):
    weight = 3
    role = "analyst"

    @task(2)
    def exception_queue(self) -> None:
        self.page("/billing/exceptions/", "exception queue")

    @task(2)
    def invoice_list(self) -> None:
        self.page("/billing/invoices/", "invoice list")

    @task(3)
    def invoice_detail(self) -> None:
        self.page(f"/billing/invoices/{random.choice(FIXTURES['invoices'])}/", "invoice detail")


class Controller(PortalUser):
    weight = 2
    role = "controller"

    @task(3)
    def queue(self) -> None:
        html = self.page("/approvals/mine/", "approvals queue")
        links = re.findall(r'href="(/approvals/requests/\d+/)"', html)
        if links:
            self.page(random.choice(links), "approval request")

    @task(1)
    def approve_invoice(self) -> None:
        html = self.page("/approvals/mine/", "approvals queue")
        links = re.findall(r'href="(/approvals/requests/\d+/)"', html)
        if not links:
            return
        link = random.choice(links)
        forms = post_forms(self.page(link, "approval request"), r"/decide/")
        if forms:
            self.submit(forms[0], "approval decide", link, extra=[("decision", "approve")])


class Collections(PortalUser):
    weight = 2
    role = "collections"

    @task(2)
    def aging(self) -> None:
        self.page("/disputes/collections/aging/", "ar aging")

    @task(2)
    def statement(self) -> None:
        client = random.choice(FIXTURES["clients"])
        self.page(f"/disputes/collections/clients/{client}/statement/", "client statement")


class ApiClient(HttpUser):
    weight = 2
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {FIXTURES['api_token']}"

    @task(2)
    def upsert_time(self) -> None:
        pair = random.choice(FIXTURES["work_pairs"])
        day = date.fromisoformat(FIXTURES["today"]) - timedelta(days=random.randint(0, 20))
        external_id = f"load-{pair['person_code']}-{pair['project_code']}-{day.isoformat()}"
        with self.client.put(
            f"/api/v1/time-entries/{external_id}/",
            name="api time upsert",
            catch_response=True,
            json={
                "person_code": pair["person_code"],
                "project_code": pair["project_code"],
                "date": day.isoformat(),
                "hours": random.choice(["0.5", "1.00", "2.00"]),
                "description": "Load test",
                "status": "draft",
            },
        ) as response:
            if response.status_code not in (200, 201):
                response.failure(f"HTTP {response.status_code} {response.text[:200]}")

    @task(2)
    def invoices(self) -> None:
        self.client.get("/api/v1/invoices/?limit=50", name="api invoice list")

    @task(2)
    def invoice(self) -> None:
        self.client.get(f"/api/v1/invoices/{random.choice(FIXTURES['api_invoices'])}/", name="api invoice detail")


class Floor(PortalUser):
    """The empty view: the same stack's cost of any page."""

    weight = 1
    role = "analyst"

    @task
    def empty(self) -> None:
        self.page("/__bench__/empty/", "empty view (floor)")
