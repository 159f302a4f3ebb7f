"""Client contacts' own door: login, session separation from staff, invitation and reset links, TOTP, lockout."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import override_settings

from customers.models import ClientContact
from customers.services.contacts import contact_invite
from tests.customers.factories import PASSWORD, contact_of, customer_login
from tests.factories import DEFAULT_PASSWORD, ClientFactory, UserFactory
from tests.login import fresh_totp_code

pytestmark = pytest.mark.django_db

STAFF_PAGES = ["/", "/billing/invoices/", "/disputes/", "/approvals/", "/admin/", "/customers/contacts/"]


@pytest.fixture
def contact():
    return contact_of(ClientFactory(code="ACME"), "carla@acme.example")


def test_a_contact_logs_in_at_the_customer_door_and_sees_the_portal(client, contact):
    response = customer_login(client, contact)
    assert response["Location"] == "/customer/"
    assert client.get("/customer/").status_code == 200


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_staff_pages_refuse_a_customer_session(client, contact, path):
    customer_login(client, contact)
    assert client.get(path).status_code == 403


def test_the_staff_login_refuses_a_contact(client, contact):
    for username in (contact.user.username, contact.email):
        response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
        assert response.status_code == 200 and "_auth_user_id" not in client.session


def test_customer_pages_refuse_a_staff_session(client):
    client.force_login(UserFactory(groups=["finance_analyst"]))
    assert client.get("/customer/").status_code == 403
    assert client.get("/customer/statement/").status_code == 403


def test_the_customer_login_refuses_staff_credentials(client):
    staff = UserFactory(username="ana", email="ana@billable.example", groups=["finance_analyst"])
    response = client.post("/customer/login/", {"email": staff.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 400 and "_auth_user_id" not in client.session


def test_an_anonymous_visitor_is_sent_to_the_customer_login(client):
    response = client.get("/customer/statement/")
    assert response.status_code == 302 and response["Location"].startswith("/customer/login/?next=")


def test_invitation_link_sets_the_password_once(client, django_capture_on_commit_callbacks):
    analyst = UserFactory(groups=["finance_analyst"])
    with django_capture_on_commit_callbacks(execute=True):
        contact = contact_invite(client=ClientFactory(), email="New@Client.example", name="Nina New", user=analyst)
    assert contact.email == "new@client.example" and not contact.user.has_usable_password()
    (message,) = mail.outbox
    link = re.search(r"http://\S+/customer/password/(\S+)/", message.body)
    path = f"/customer/password/{link.group(1)}/"
    assert client.get(path).status_code == 200
    response = client.post(path, {"password": "Fresh-Passw0rd-x", "password2": "Fresh-Passw0rd-x"})
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.activated_at is not None
    assert client.post("/customer/login/", {"email": contact.email, "password": "Fresh-Passw0rd-x"}).status_code == 302
    # The link is single use.
    client.logout()
    again = client.post(path, {"password": "Other-Passw0rd-y", "password2": "Other-Passw0rd-y"})
    assert b"already used" in again.content
    assert ClientContact.objects.get(pk=contact.pk).user.check_password("Fresh-Passw0rd-x")


def test_an_expired_or_forged_link_sets_nothing(client, contact):
    from customers import tokens

    token = tokens.make_token(contact, tokens.RESET)
    with override_settings(CUSTOMER_RESET_MAX_AGE_HOURS=-1):
        response = client.post(
            f"/customer/password/{token}/", {"password": "Xx-new-pass-1", "password2": "Xx-new-pass-1"}
        )
    assert b"expired" in response.content
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    response = client.post(f"/customer/password/{forged}/", {"password": "Xx-new-pass-1", "password2": "Xx-new-pass-1"})
    assert b"not valid" in response.content
    contact.user.refresh_from_db()
    assert contact.user.check_password(PASSWORD)


def test_password_reset_answers_the_same_and_mails_only_contacts(client, contact):
    a = client.post("/customer/password/", {"email": "nobody@nowhere.example"})
    b = client.post("/customer/password/", {"email": contact.email})
    assert a.status_code == b.status_code == 200 and a.content.count(b"link is on its way") == 1
    assert [m.to for m in mail.outbox] == [[contact.email]]


def test_login_is_rate_limited(client, contact):
    for _ in range(5):
        client.post("/customer/login/", {"email": contact.email, "password": "wrong"})
    locked = client.post("/customer/login/", {"email": contact.email, "password": PASSWORD})
    assert locked.status_code == 429 and "_auth_user_id" not in client.session


def test_an_enrolled_contact_needs_a_code_after_the_password(client, contact):
    from tests.login import confirmed_totp_device

    confirmed_totp_device(contact.user)
    response = client.post("/customer/login/", {"email": contact.email, "password": PASSWORD})
    assert response["Location"] == "/customer/login/code/"
    assert client.get("/customer/").status_code == 302  # not logged in yet
    assert client.post("/customer/login/code/", {"token": fresh_totp_code(contact.user)}).status_code == 302
    assert client.get("/customer/").status_code == 200
