"""Two doors, two kinds of session (ADR 0095).

Staff log in at /accounts/login/ through `StaffBackend`, which refuses client contacts. Client contacts
log in at /customer/login/ through `CustomerBackend`, which only knows contacts (by e-mail) and only
answers when the customer login asks (`portal="customer"`). django-axes sits in front of both, so
the same lockout after repeated failures holds at either door.

`CustomerSessionMiddleware` keeps the sessions apart: a customer session reaches only the customer
portal (403 anywhere else, Django admin included); a staff session is refused by every customer page
(`customers.views.common.contact_view`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden

CUSTOMER_BACKEND = "customers.auth.CustomerBackend"
#: Set at a customer login, with the backend: this session belongs to the customer portal.
SESSION_FLAG = "customer_portal"
CUSTOMER_PREFIX = "/customer/"


class StaffBackend(ModelBackend):
    """Django's password check for staff, refusing client contacts (they have their own door)."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ):
        if kwargs.get("portal") == "customer":
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def user_can_authenticate(self, user: Any) -> bool:
        from customers.models import ClientContact

        return super().user_can_authenticate(user) and not ClientContact.objects.filter(user_id=user.pk).exists()

    def get_user(self, user_id: Any):
        """The session's staff user, in the one query every request makes (a contact is never one)."""
        user = get_user_model()._default_manager.filter(pk=user_id, client_contact__isnull=True).first()
        return user if user is not None and super().user_can_authenticate(user) else None


class CustomerBackend(ModelBackend):
    """A client contact, by e-mail and password; only for the customer login."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        portal: str | None = None,
        **kwargs: Any,
    ):
        from customers.models import ClientContact

        if portal != "customer" or not username or not password:
            return None
        contact = (
            ClientContact.objects.select_related("user").filter(email__iexact=username.strip(), is_active=True).first()
        )
        if contact is None:
            get_user_model()().set_password(password)  # the same work as a real check: no timing difference
            return None
        user = contact.user
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    def get_user(self, user_id: Any):
        user = (
            get_user_model()._default_manager.filter(pk=user_id, is_active=True, client_contact__is_active=True).first()
        )
        return user

    # A contact holds no Django permissions.
    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        return set()

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return False


def is_customer_session(request: HttpRequest) -> bool:
    session = getattr(request, "session", None)
    if session is None:
        return False
    return bool(session.get(SESSION_FLAG)) or session.get(BACKEND_SESSION_KEY) == CUSTOMER_BACKEND


class CustomerSessionMiddleware:
    """A customer session reaches the customer portal and static files only; anything else is 403."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_customer_session(request) and not request.path_info.startswith(
            (CUSTOMER_PREFIX, "/" + settings.STATIC_URL.lstrip("/"))
        ):
            return HttpResponseForbidden(
                "This page is for Billable staff. You are signed in to the customer portal: /customer/",
                content_type="text/plain",
            )
        return self.get_response(request)
