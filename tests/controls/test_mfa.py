"""Finding 4 of issue 12 (second half): people who approve money pass a TOTP check (django-otp).

Finance controllers, billing admins and superusers must enrol an authenticator app and enter its
code before any portal or admin page; everyone else may enrol (and is then asked too). Only DEBUG
(the local demo) lifts the requirement, and the login page says so. API tokens are unaffected.
Everything here goes through the real login form and the real MFA page — no force_login.
"""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing.models import Invoice
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.login import confirmed_totp_device, totp_code

pytestmark = [pytest.mark.django_db, pytest.mark.control("mfa")]

MFA = "/accounts/mfa/"


@pytest.fixture(autouse=True)
def _no_throttle_delay(settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # wrong codes still count; the delay is tested on its own below


def log_in(username: str, next_url: str = "/") -> tuple[Client, object]:
    """The password step through the login form, then the page it sends to (`next`): what the user lands on."""
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": DEFAULT_PASSWORD, "next": next_url})
    assert response.status_code == 302 and response["Location"] == next_url, "the password step passed"
    return client, client.get(next_url)


def held(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(MFA)


def code_of(device: TOTPDevice) -> str:
    code = totp_code(device)
    assert code is not None
    return code


@pytest.mark.parametrize(
    "make_user",
    [
        pytest.param(lambda: UserFactory(username="fc", groups=["finance_controller"], is_staff=True), id="controller"),
        pytest.param(lambda: UserFactory(username="fc", groups=["billing_admin"], is_staff=True), id="billing-admin"),
        pytest.param(lambda: UserFactory(username="fc", is_staff=True, is_superuser=True), id="superuser"),
    ],
)
def test_privileged_users_are_held_at_the_mfa_page_everywhere(make_user):
    make_user()
    client, login = log_in("fc", next_url="/billing/invoices/")

    assert held(login)
    for url in ("/", "/billing/invoices/", "/approvals/", "/disputes/", "/admin/", "/admin/auth/user/",
                "/insights/", "/accounts/password_change/"):
        response = client.get(url)
        assert held(response), url
        assert response["Location"] == f"{MFA}?next={url.replace('/', '%2F')}"
    page = client.get(login["Location"])
    assert page.status_code == 200
    assert "Set up two-factor sign-in" in page.content.decode()


def test_a_held_session_cannot_act():
    """A POST of a held session is redirected before the view: nothing changes."""
    UserFactory(username="fc", groups=["finance_controller"])
    client, _ = log_in("fc")
    invoices_before = Invoice.objects.count()

    response = client.post(reverse("billing:run_list"), {"period": "2025-03", "run_date": "2025-04-02"})

    assert held(response)
    assert Invoice.objects.count() == invoices_before


def test_htmx_requests_are_sent_to_the_mfa_page_too():
    UserFactory(username="fc", groups=["finance_controller"])
    client, _ = log_in("fc")
    response = client.get("/billing/invoices/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response["HX-Redirect"].startswith(MFA)
    assert response.content == b""


def test_enrolment_then_every_later_login_asks_for_a_code():
    user = UserFactory(username="fc", groups=["finance_controller"], is_staff=True)
    client, login = log_in("fc", next_url="/billing/invoices/")
    page = client.get(login["Location"]).content.decode()
    secret = re.search(r'id="mfa-secret">([A-Z2-7]+)<', page).group(1)
    assert "otpauth://totp/" in page and "<svg" in page
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert client.get(MFA).content.decode().count(secret) >= 1  # the same secret until confirmed

    wrong = client.post(MFA, {"token": "123456", "next": "/billing/invoices/"})
    assert wrong.status_code == 200 and "not valid" in wrong.content.decode()
    assert held(client.get("/billing/invoices/"))

    done = client.post(MFA, {"token": code_of(device), "next": "/billing/invoices/"})
    assert done.status_code == 302 and done["Location"] == "/billing/invoices/"
    assert client.get("/billing/invoices/").status_code == 200
    assert client.get("/admin/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed

    # A new session: the password is not enough; a wrong code is refused; the right one lets in.
    later, login = log_in("fc")
    assert held(login)
    page = later.get(login["Location"]).content.decode()
    assert "Two-factor check" in page and "mfa-secret" not in page  # no secret shown again
    assert later.post(MFA, {"token": "000000"}).status_code == 200
    assert held(later.get("/"))
    assert later.post(MFA, {"token": code_of(device), "next": "/"}).status_code == 302
    assert later.get("/").status_code == 200


def test_a_code_works_once():
    user = UserFactory(username="fc", groups=["finance_controller"])
    device = confirmed_totp_device(user)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    code = f"{totp.token():06d}"  # the app's current code

    first, _ = log_in("fc")
    assert first.post(MFA, {"token": code}).status_code == 302
    second, _ = log_in("fc")
    replay = second.post(MFA, {"token": code})
    assert replay.status_code == 200 and "not valid" in replay.content.decode()
    assert held(second.get("/"))


def test_wrong_codes_slow_down_the_next_try(settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    user = UserFactory(username="fc", groups=["finance_controller"])
    device = confirmed_totp_device(user)
    client, _ = log_in("fc")
    client.post(MFA, {"token": "000000"})

    refused = client.post(MFA, {"token": code_of(device)})  # right, but within the throttle delay

    assert refused.status_code == 200
    assert held(client.get("/"))


def test_other_roles_need_no_code_but_may_enrol():
    user = UserFactory(username="ana", groups=["finance_analyst"])
    client, landing = log_in("ana", next_url="/billing/invoices/")
    assert landing.status_code == 200

    page = client.get(MFA).content.decode()
    assert "Optional for your role" in page
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert client.post(MFA, {"token": code_of(device), "next": "/"}).status_code == 302

    _later, login = log_in("ana")  # enrolled: from now on asked like everyone enrolled
    assert held(login)


def test_under_debug_the_demo_logins_work_without_mfa_and_say_so(settings):
    UserFactory(username="controller", groups=["finance_controller"])
    settings.DEBUG = True
    login_page = " ".join(Client().get("/accounts/login/").content.decode().split())
    assert "DEBUG is on: the demo logins work without two-factor" in login_page

    client, landing = log_in("controller", next_url="/billing/invoices/")
    assert landing.status_code == 200

    settings.DEBUG = False
    assert held(client.get("/billing/invoices/"))
    assert "DEBUG is on" not in Client().get("/accounts/login/").content.decode()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("MFA_ENABLED", False), ("MFA_REQUIRED", False), ("OTP_ENABLED", False), ("OTP_DISABLED", True),
     ("AXES_ENABLED", False), ("OTP_TOTP_ISSUER", "")],
)
def test_no_other_setting_switches_mfa_off(settings, setting, value):
    setattr(settings, setting, value)
    UserFactory(username="fc", groups=["finance_controller"])
    client, login = log_in("fc")
    assert held(login)
    assert held(client.get("/"))


def test_a_device_of_someone_else_does_not_verify():
    UserFactory(username="fc", groups=["finance_controller"])
    other = UserFactory(username="other", groups=["finance_controller"])
    other_device = confirmed_totp_device(other)
    client, _ = log_in("fc")
    client.get(MFA)  # fc is offered enrolment of their own device

    assert client.post(MFA, {"token": code_of(other_device)}).status_code == 200
    assert held(client.get("/"))


def test_api_token_clients_are_unaffected():
    from integrations.services.clients import integration_client_create

    _client, token, _secret = integration_client_create(name="erp", scopes=["read:billing"])
    api = Client()
    response = api.get("/api/v1/invoices/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200


def test_force_login_of_privileged_users_in_tests_holds_a_real_verified_device(client):
    """The test-suite shortcut (tests/conftest.py) marks the session verified with a real confirmed device."""
    user = UserFactory(username="fc", groups=["finance_controller"])
    client.force_login(user)
    assert client.get("/billing/invoices/").status_code == 200
    assert TOTPDevice.objects.filter(user=user, confirmed=True).count() == 1


def test_an_mfa_reset_in_the_admin_ends_every_session_of_that_user(django_capture_on_commit_callbacks):
    """A lost phone: the admin deletes the user's device; whoever holds a session verified with it is signed out."""
    user = UserFactory(username="fc", groups=["finance_controller"], is_staff=True)
    device = confirmed_totp_device(user)
    sessions = []
    for _ in range(2):
        session, login = log_in("fc")
        assert session.post(MFA, {"token": code_of(device), "next": "/"}).status_code == 302
        assert session.get("/billing/invoices/").status_code == 200
        sessions.append(session)
    bystander = UserFactory(username="pm", groups=["project_manager"])
    other = Client()
    other.force_login(bystander)
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    with django_capture_on_commit_callbacks(execute=True):
        deleted = admin.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302 and not TOTPDevice.objects.filter(pk=device.pk).exists()

    for session in sessions:
        response = session.get("/billing/invoices/")
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert other.get("/").status_code == 200  # other users' sessions are untouched
    # Signing in again asks for a new enrolment: the reset device is gone.
    again, login = log_in("fc")
    assert held(login) and "Set up two-factor sign-in" in again.get(login["Location"]).content.decode()
