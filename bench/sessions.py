"""Signed-in sessions for the benchmarks: what a user who passed the login (and MFA, where required) holds.

Controllers, billing admins and superusers must pass a TOTP check (kernel/security.py); a benchmark
measures the pages, not the login, so it marks the session verified with a real, confirmed TOTP
device of the user — the state the real MFA flow leaves a session in.
"""

from __future__ import annotations

from typing import Any


def verify_mfa(session: Any, user: Any) -> None:
    """Mark `session` (a SessionBase) as having passed MFA with the user's confirmed TOTP device."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from kernel.security import mfa_required

    if not mfa_required(user):
        return
    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
    device = device or TOTPDevice.objects.create(user=user, name="Benchmark authenticator", confirmed=True)
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


# The backend `login()` records for staff (portal/settings.py): a session naming a backend that is not
# configured is anonymous, and every page would answer with the login redirect.
STAFF_BACKEND = "customers.auth.StaffBackend"


def signed_in_session_key(user: Any) -> str:
    """A new session of `user` in the session store (as `login()` leaves it), MFA passed: its key for a cookie."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = user._meta.pk.value_to_string(user)
    store[BACKEND_SESSION_KEY] = STAFF_BACKEND
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    verify_mfa(store, user)
    return store.session_key
