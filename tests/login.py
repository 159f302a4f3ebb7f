"""Logging in as a user who must pass two-factor (MFA), for tests.

Controllers, billing admins and superusers must pass a TOTP check before any page
(kernel/security.py). The MFA itself is proven through the real login flow in
tests/controls/test_mfa.py; other tests log in as someone who has passed it:

- `client.force_login(user)` does so by itself: tests/conftest.py wraps it so that, for a
  user who must pass MFA, the session is also verified with a real (confirmed) TOTP device
  of that user — the state the real flow leaves the session in.
- `mark_session_verified(client, user)` does the same for a client logged in otherwise.
- `log_in(page, username, next_url)` signs in through the browser's login form and, when
  the MFA page asks, types the current code of the user's authenticator (a real device).
"""
from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from kernel.security import mfa_required
from tests.factories import DEFAULT_PASSWORD

TEST_DEVICE_NAME = "Test authenticator"


def confirmed_totp_device(user) -> TOTPDevice:
    """The user's confirmed TOTP device (made if they have none): their authenticator app."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=TEST_DEVICE_NAME, confirmed=True)


def totp_code(device: TOTPDevice) -> str | None:
    """A code `device` accepts now: the app's current one, or the next within the clock tolerance when the
    current step was already used (codes are single-use); None when every step in the window was used."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    now = totp.time
    for offset in range(device.tolerance + 1):
        totp.time = now + offset * device.step
        if totp.t() > device.last_t:
            return f"{totp.token():0{device.digits}d}"
    return None


def fresh_totp_code(user) -> str:
    """A code that logs `user` in now; a second authenticator is enrolled if the first one's window is used up."""
    code = totp_code(confirmed_totp_device(user))
    if code is None:
        code = totp_code(TOTPDevice.objects.create(user=user, name=TEST_DEVICE_NAME, confirmed=True))
    assert code is not None
    return code


def mark_session_verified(client, user) -> None:
    """The client's session has passed MFA with the user's (real, confirmed) TOTP device."""
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = confirmed_totp_device(user).persistent_id
    session.save()


def log_in(page, username: str, next_url: str, password: str = DEFAULT_PASSWORD) -> None:
    """Signs in through the login form; types the TOTP code when the MFA page asks for it."""
    user = get_user_model().objects.get(username=username)
    if mfa_required(user):
        confirmed_totp_device(user)  # enrolled before: the MFA page asks for a code, not for set-up
    page.goto(f"/accounts/login/?next={next_url}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/mfa/" in url or url.endswith(next_url))
    if "/accounts/mfa/" in page.url:
        page.get_by_label("Authentication code").fill(fresh_totp_code(user))
        page.get_by_role("button", name=re.compile("^(Verify|Confirm and continue)$")).click()
    page.wait_for_url(re.compile(re.escape(next_url) + "$"))
