"""Login security of the portal: the client address for lockouts, and the MFA requirement.

Who must pass a TOTP check (docs/decisions/0034-login-security.md): finance controllers,
billing admins and superusers — the people who approve money or change its rules — and
anyone who enrolled of their own accord. `MfaRequiredMiddleware` holds every page (portal
and admin) of such a session until it is verified; only `DEBUG` (the local demo) lifts the
requirement, and no other setting can. API clients authenticate with tokens, not sessions,
and are not concerned. Resetting someone's MFA (deleting a confirmed device) ends all their
sessions, so nobody stays signed in on the strength of a device that was lost.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

from kernel import roles

logger = logging.getLogger(__name__)

#: Roles whose members must pass MFA (superusers too, whatever their groups).
MFA_ROLES = frozenset({roles.FINANCE_CONTROLLER, roles.BILLING_ADMIN})


def client_ip(request: HttpRequest) -> str:
    """The client's address for login lockouts: the socket peer, or the address the trusted proxies saw.

    With `TRUSTED_PROXY_HOPS = n`, the n-th address from the right of X-Forwarded-For is the one
    the outermost trusted proxy received the request from; anything further left is client-supplied.
    """
    hops = getattr(settings, "TRUSTED_PROXY_HOPS", 0)
    if hops > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "")


def mfa_enforced() -> bool:
    """MFA is enforced everywhere but under DEBUG (the local demo); deliberately no other switch."""
    return not settings.DEBUG


def mfa_required(user) -> bool:
    """Whether `user` must pass a TOTP check: a privileged role, a superuser, or an enrolled device. One query."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user_model = get_user_model()
    return user_model.objects.filter(pk=user.pk).filter(
        Q(Exists(user_model.groups.through.objects.filter(user_id=OuterRef("pk"), group__name__in=MFA_ROLES)))
        | Q(Exists(TOTPDevice.objects.filter(user_id=OuterRef("pk"), confirmed=True)))
    ).exists()


#: Set at login: the user had a confirmed device then (optional enrolment: asked for a code like the roles above).
SESSION_ENROLLED_KEY = "mfa_enrolled"


def session_verified(request: HttpRequest) -> bool:
    """Whether this session passed a TOTP check: django-otp's `login()` put the device in the (server-side) session.

    Read from the session, which authentication loads anyway: no query per request.
    """
    return bool(request.session.get(DEVICE_ID_SESSION_KEY))


def remember_enrolment(sender, request, user, **kwargs) -> None:
    """At login (a `user_logged_in` receiver): note whether the user enrolled a device, for the requests to come."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if request is not None and hasattr(request, "session"):
        request.session[SESSION_ENROLLED_KEY] = TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def end_sessions_of(user_id: int) -> int:
    """Deletes every live session of user `user_id` (sessions are server-side rows); returns how many.

    A reset of MFA must throw out whoever holds a session verified with the device that was lost or
    stolen, and a session of a user who enrolled would otherwise still count as verified.
    """
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    ended = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get(SESSION_KEY) == str(user_id)
    ]
    Session.objects.filter(pk__in=ended).delete()
    return len(ended)


def end_sessions_on_device_removal(sender, instance, **kwargs) -> None:
    """A `post_delete` receiver of TOTP devices: removing a confirmed device (an MFA reset) ends the user's sessions."""
    if not instance.confirmed:
        return
    from django.db import transaction

    user_id = instance.user_id
    transaction.on_commit(lambda: logger.info("MFA reset of user %s: %d sessions ended", user_id,
                                              end_sessions_of(user_id)))


def _exempt_prefixes() -> tuple[str, ...]:
    return (
        reverse("mfa"),
        reverse("login"),
        reverse("logout"),
        reverse("admin:logout"),
        "/" + settings.STATIC_URL.lstrip("/"),
    )


class MfaRequiredMiddleware:
    """Sends a session that must pass MFA and has not to the MFA page (enrol or verify), whatever it asked for."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if mfa_enforced() and self._held(request):
            target = f"{reverse('mfa')}?{urlencode({'next': request.get_full_path()})}"
            if request.headers.get("HX-Request"):
                response = HttpResponse(status=200)
                response["HX-Redirect"] = target
                return response
            return HttpResponseRedirect(target)
        return self.get_response(request)

    @staticmethod
    def _held(request: HttpRequest) -> bool:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return False
        if request.path_info.startswith(_exempt_prefixes()):
            return False
        if session_verified(request):
            return False
        if user.is_superuser or request.session.get(SESSION_ENROLLED_KEY):
            return True
        # The roles memoised on the user: the views that check roles reuse this query.
        from kernel.roles import cached_user_roles

        return bool(cached_user_roles(user) & MFA_ROLES)
