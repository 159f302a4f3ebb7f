"""Client contacts: invite, set a password from a signed link, ask for a reset, deactivate (docs/rules/customers.md)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing.models import Client
from customers import notify, tokens
from customers.models import ClientContact
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from kernel.roles import BILLING_ADMIN, FINANCE_ANALYST, FINANCE_CONTROLLER, has_any_role

#: Staff who may invite client contacts.
INVITER_ROLES = (FINANCE_ANALYST, FINANCE_CONTROLLER, BILLING_ADMIN)


def _require_inviter(user: Any) -> None:
    if not (getattr(user, "is_superuser", False) or has_any_role(user, INVITER_ROLES)):
        raise PermissionDeniedError("Only finance and billing admins invite client contacts.")


def _link(contact: ClientContact, purpose: str) -> str:
    token = tokens.make_token(contact, purpose)
    return notify.portal_base_url() + reverse("customers:set_password", args=[token])


@transaction.atomic
def contact_invite(*, client: Client, email: str, name: str, user: Any) -> ClientContact:
    """Create the contact (a user without a usable password) and e-mail the set-password link."""
    _require_inviter(user)
    email = (email or "").strip().lower()
    name = (name or "").strip()
    if not email or "@" not in email:
        raise ApplicationError("Enter the contact's e-mail address.", field_errors={"email": ["Required."]})
    if not name:
        raise ApplicationError("Enter the contact's name.", field_errors={"name": ["Required."]})
    if ClientContact.objects.filter(email__iexact=email).exists():
        raise ApplicationError(
            f"{email} is already a client contact.",
            code="contact_exists",
            field_errors={"email": ["Already a contact."]},
        )
    first, _, last = name.partition(" ")
    account = get_user_model().objects.create_user(
        username=f"contact:{email}"[:150], email=email, first_name=first[:150], last_name=last[:150]
    )
    account.set_unusable_password()
    account.save(update_fields=["password"])
    contact = ClientContact(
        client=client, email=email, name=name, user=account, invited_by=user, invited_at=timezone.now()
    )
    save_audited(contact, user=user, reason=f"Invited to the customer portal of {client.code}")
    link = _link(contact, tokens.INVITATION)
    hours = tokens.max_age(tokens.INVITATION) // 3600
    transaction.on_commit(
        lambda: notify.send(
            [email],
            f"Your access to the {client.legal_name} billing portal",
            f"Hello {name},\n\nYou are invited to the customer portal: invoices, statements, disputes and "
            f"signatures for {client.legal_name}.\n\nSet your password here (the link is valid for {hours} hours):\n"
            f"{link}\n",
        )
    )
    return contact


@transaction.atomic
def contact_set_password(*, token: str, password: str) -> ClientContact:
    """Set the password from an invitation or reset link (single use, expiring)."""
    contact, purpose = tokens.read_token(token)
    contact = ClientContact.objects.select_for_update().select_related("user").get(pk=contact.pk)
    try:
        password_validation.validate_password(password, contact.user)
    except ValidationError as exc:
        raise ApplicationError(" ".join(exc.messages), field_errors={"password": exc.messages}) from exc
    contact.user.set_password(password)
    contact.user.save(update_fields=["password"])
    first = contact.activated_at is None
    if first:
        contact.activated_at = timezone.now()
    save_audited(
        contact,
        user=contact.user,
        reason="Accepted the invitation" if purpose == tokens.INVITATION else "Reset the password",
    )
    return contact


def contact_password_reset_request(*, email: str) -> None:
    """E-mail a reset link when `email` is an active contact's; the caller answers the same either way."""
    contact = (
        ClientContact.objects.select_related("user").filter(email__iexact=(email or "").strip(), is_active=True).first()
    )
    if contact is None:
        return
    link = _link(contact, tokens.RESET)
    hours = tokens.max_age(tokens.RESET) // 3600
    notify.send(
        [contact.email],
        "Reset your customer portal password",
        f"Hello {contact.name},\n\nSomeone asked to reset your password. If it was you, set a new one "
        f"here (valid for {hours} hours, once):\n{link}\n\nIf not, ignore this e-mail.\n",
    )


@transaction.atomic
def contact_deactivate(*, contact: ClientContact, user: Any, reason: str) -> ClientContact:
    _require_inviter(user)
    contact = ClientContact.objects.select_for_update().get(pk=contact.pk)
    contact.is_active = False
    save_audited(contact, user=user, reason=reason or "Deactivated")
    return contact
