"""Signed, expiring links for a contact to set a password (invitation) or reset it.

The link carries the contact's id and a fingerprint of the current password hash, signed with the
project's secret (`django.core.signing`): it expires after its maximum age, and it is single use —
setting a password changes the hash, so the fingerprint no longer matches.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core import signing

from customers.models import ClientContact
from kernel.errors import ApplicationError

SALT = "customers.set-password"
INVITATION = "invite"
RESET = "reset"


def max_age(purpose: str) -> int:
    if purpose == INVITATION:
        return int(getattr(settings, "CUSTOMER_INVITATION_MAX_AGE_HOURS", 168)) * 3600
    return int(getattr(settings, "CUSTOMER_RESET_MAX_AGE_HOURS", 2)) * 3600


def _fingerprint(contact: ClientContact) -> str:
    return hashlib.sha256(f"{contact.user.password}|{contact.activated_at}".encode()).hexdigest()[:20]


def make_token(contact: ClientContact, purpose: str) -> str:
    return signing.dumps({"c": contact.pk, "p": purpose, "f": _fingerprint(contact)}, salt=SALT, compress=True)


def read_token(token: str) -> tuple[ClientContact, str]:
    """The contact and purpose of a valid link; `ApplicationError` for an expired, used or forged one."""
    try:
        unverified = signing.loads(token, salt=SALT)
        data = signing.loads(token, salt=SALT, max_age=max_age(unverified.get("p", RESET)))
    except signing.SignatureExpired as exc:
        raise ApplicationError("This link has expired. Ask for a new one.", code="link_expired") from exc
    except (signing.BadSignature, AttributeError, TypeError) as exc:
        raise ApplicationError("This link is not valid.", code="link_invalid") from exc
    contact = ClientContact.objects.select_related("user", "client").filter(pk=data.get("c"), is_active=True).first()
    if contact is None or data.get("f") != _fingerprint(contact):
        raise ApplicationError("This link was already used or is no longer valid.", code="link_used")
    return contact, data.get("p", RESET)
