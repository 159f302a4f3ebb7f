"""Optional TOTP for client contacts (django-otp, as for staff in kernel/security.py): enrol, then every login
asks for a code after the password. Codes are single use and wrong ones are throttled (django-otp)."""

from __future__ import annotations

from base64 import b32encode
from dataclasses import dataclass
from typing import Any

import segno
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from kernel.audit import save_audited

DEVICE_NAME = "Customer portal authenticator"


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg: str


def has_device(user: Any) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


@transaction.atomic
def enrolment_start(*, user: Any) -> Enrolment:
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    uri = device.config_url
    return Enrolment(
        secret=b32encode(device.bin_key).decode(),
        uri=uri,
        qr_svg=segno.make(uri, error="m").svg_inline(scale=4, border=2, title="Authenticator set-up"),
    )


@transaction.atomic
def enrolment_confirm(*, user: Any, token: str) -> TOTPDevice | None:
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("pk").first()
    if device is None or not device.verify_token((token or "").strip()):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    contact = getattr(user, "client_contact", None)
    if contact is not None:
        save_audited(contact, user=user, reason="Enrolled an authenticator app")
    return device


@transaction.atomic
def verify(*, user: Any, token: str) -> TOTPDevice | None:
    for device in TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk"):
        if device.verify_token((token or "").strip()):
            return device
    return None
