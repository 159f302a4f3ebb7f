"""Finding 4 of issue 12: password guessing is throttled — lockout per username + client address (django-axes).

Before: 30 wrong passwords in 14 s, then the right one logged in. Now the pair is locked out after
AXES_FAILURE_LIMIT failures, for the cool-off, on the portal login and the admin login alike; an admin
lifts a lockout in the admin or with a management command.
"""
from __future__ import annotations

import datetime

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("login-security")]

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


def _post(client: Client, url: str, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password, "next": "/"}, REMOTE_ADDR=ip)


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_thirty_wrong_passwords_then_the_right_one_is_refused():
    UserFactory(username="alice", groups=["finance_analyst"])
    client = Client()
    answers = [_post(client, LOGIN, "alice", f"guess-{i}").status_code for i in range(30)]

    right = _post(client, LOGIN, "alice", DEFAULT_PASSWORD)

    assert answers[:4] == [200] * 4  # the form again, "wrong password"
    assert set(answers[5:]) == {429}  # locked out from the 5th failure on
    assert right.status_code == 429
    assert "Sign-in locked" in right.content.decode()
    assert not _logged_in(client)
    assert client.get("/").status_code == 302  # still anonymous: sent to log in


def test_the_admin_login_shares_the_lockout():
    UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    for i in range(5):
        _post(client, ADMIN_LOGIN, "root", f"guess-{i}")

    assert _post(client, ADMIN_LOGIN, "root", DEFAULT_PASSWORD).status_code == 429
    assert _post(Client(), LOGIN, "root", DEFAULT_PASSWORD).status_code == 429  # one account, one lockout
    assert not _logged_in(client)


def test_lockout_is_per_username_and_address():
    UserFactory(username="alice")
    UserFactory(username="bob")
    for i in range(5):
        _post(Client(), LOGIN, "alice", f"guess-{i}", ip="10.0.0.1")

    bob = Client()
    assert _post(bob, LOGIN, "bob", DEFAULT_PASSWORD, ip="10.0.0.1").status_code == 302  # another user
    assert _logged_in(bob)
    elsewhere = Client()
    assert _post(elsewhere, LOGIN, "alice", DEFAULT_PASSWORD, ip="10.9.9.9").status_code == 302  # another address
    assert _logged_in(elsewhere)


def test_a_success_before_the_limit_clears_the_count():
    UserFactory(username="alice")
    for i in range(4):
        _post(Client(), LOGIN, "alice", f"guess-{i}")
    assert _post(Client(), LOGIN, "alice", DEFAULT_PASSWORD).status_code == 302
    for i in range(4):
        assert _post(Client(), LOGIN, "alice", f"again-{i}").status_code == 200
    assert _post(Client(), LOGIN, "alice", DEFAULT_PASSWORD).status_code == 302


def test_the_lockout_ends_after_the_cool_off(time_machine):
    UserFactory(username="alice")
    time_machine.move_to(datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC), tick=False)
    for i in range(5):
        _post(Client(), LOGIN, "alice", f"guess-{i}")
    time_machine.move_to(datetime.datetime(2026, 3, 2, 9, 14, tzinfo=datetime.UTC), tick=False)
    assert _post(Client(), LOGIN, "alice", DEFAULT_PASSWORD).status_code == 429  # restarts the cool-off
    time_machine.move_to(datetime.datetime(2026, 3, 2, 9, 28, tzinfo=datetime.UTC), tick=False)
    assert _post(Client(), LOGIN, "alice", DEFAULT_PASSWORD).status_code == 429  # 28 min after the lock, 14 after
    time_machine.move_to(datetime.datetime(2026, 3, 2, 9, 44, tzinfo=datetime.UTC), tick=False)
    assert _post(Client(), LOGIN, "alice", DEFAULT_PASSWORD).status_code == 302


def test_an_admin_lifts_a_lockout_with_the_management_command():
    UserFactory(username="alice")
    for i in range(5):
        _post(Client(), LOGIN, "alice", f"guess-{i}")
    assert _post(Client(), LOGIN, "alice", DEFAULT_PASSWORD).status_code == 429

    call_command("axes_reset_username", "alice")

    assert _post(Client(), LOGIN, "alice", DEFAULT_PASSWORD).status_code == 302


def test_an_admin_sees_and_deletes_lockouts_in_the_admin():
    UserFactory(username="alice")
    for i in range(5):
        _post(Client(), LOGIN, "alice", f"guess-{i}")
    attempt = AccessAttempt.objects.get(username="alice")
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    listing = admin.get(reverse("admin:axes_accessattempt_changelist"))
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    deleted = admin.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})

    assert deleted.status_code == 302 and not AccessAttempt.objects.filter(username="alice").exists()
    assert _post(Client(), LOGIN, "alice", DEFAULT_PASSWORD).status_code == 302


def test_api_tokens_are_not_password_logins():
    """Integration clients authenticate with tokens: a locked-out address does not stop them (and no form exists)."""
    client = Client()
    for i in range(6):
        _post(client, LOGIN, "nobody", f"guess-{i}")
    assert client.get("/api/v1/invoices/", REMOTE_ADDR="10.0.0.1").status_code == 401


def test_client_address_behind_trusted_proxies(settings, rf):
    from kernel.security import client_ip

    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7, 10.1.1.1", REMOTE_ADDR="10.0.0.2")
    settings.TRUSTED_PROXY_HOPS = 0
    assert client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_HOPS = 2
    assert client_ip(request) == "203.0.113.7"  # the spoofable left part is ignored
