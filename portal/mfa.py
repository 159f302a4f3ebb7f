"""TOTP enrolment and verification (django-otp), the use cases behind the MFA page.

A user enrols one authenticator app: an unconfirmed TOTP device is made (its secret shown
once as text, an otpauth:// URI and a QR code), and becomes confirmed with the first code
the app shows. Later sessions are verified with a code of any confirmed device. Codes are
single-use (django-otp keeps the last time step used) and wrong codes slow the next try down
(django-otp's throttling). Resetting a user's MFA is deleting their devices in the admin, which
ends every session of that user (kernel.security.end_sessions_on_device_removal).
"""
from __future__ import annotations

from base64 import b32encode
from dataclasses import dataclass

import segno
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

DEVICE_NAME = "Authenticator app"


@dataclass(frozen=True)
class Enrolment:
    device: TOTPDevice
    secret: str  # base32, what an authenticator app asks for when typed in by hand
    uri: str  # otpauth://totp/...
    qr_svg: str  # the URI as an inline SVG QR code


def has_confirmed_device(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


@transaction.atomic
def totp_enrolment_start(*, user) -> Enrolment:
    """The user's pending (unconfirmed) device, made on first call; the same secret until confirmed."""
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    uri = device.config_url
    return Enrolment(
        device=device,
        secret=b32encode(device.bin_key).decode(),
        uri=uri,
        qr_svg=segno.make(uri, error="m").svg_inline(scale=4, border=2, title="Authenticator set-up code"),
    )


@transaction.atomic
def totp_enrolment_confirm(*, request: HttpRequest, token: str) -> bool:
    """Confirms the pending device with its first code and marks the session verified; False if the code is wrong."""
    user = request.user
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("pk").first()
    if device is None or not device.verify_token(token.strip()):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    otp_login(request, device)
    return True


@transaction.atomic
def totp_verify(*, request: HttpRequest, token: str) -> bool:
    """Verifies this session with a code of one of the user's confirmed devices (rows locked: a code counts once)."""
    for device in TOTPDevice.objects.select_for_update().filter(user=request.user, confirmed=True).order_by("pk"):
        if device.verify_token(token.strip()):
            otp_login(request, device)
            return True
    return False
