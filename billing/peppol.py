"""Peppol electronic addresses [BT-34, BT-49]: the Electronic Address Scheme (EAS) code list and its checks.

A party's electronic address is, in this order: its explicit Peppol participant
id (`SCHEME:VALUE`, master data on the client and the entity), else its VAT
number under its country's VAT scheme (9930 DE, 9925 BE …). E-mail (`EM`) is not a
Peppol scheme (rule PEPPOL-EN16931-CL008): a party with neither has no Peppol
address, and its UBL e-invoice cannot be issued (ADR 0056).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum.exceptions import ValidationError as StdnumError

from billing.vat import vat_id_is_valid

# EAS codes the Peppol BIS 3.0 rules accept (PEPPOL-EN16931-CL008, release 3.0.19).
_EAS_LIST = (
    "0002 0007 0009 0037 0060 0088 0096 0097 0106 0130 0135 0142 0151 0177 0183 0184 0188 0190 0191 0192 0193 "
    "0195 0196 0198 0199 0200 0201 0202 0204 0208 0209 0210 0211 0212 0213 0215 0216 0218 0221 0230 0235 9910 "
    "9913 9914 9915 9918 9919 9920 9922 9923 9924 9925 9926 9927 9928 9929 9930 9931 9932 9933 9934 9935 9936 "
    "9937 9938 9939 9940 9941 9942 9943 9944 9945 9946 9947 9948 9949 9950 9951 9952 9953 9957 9959 0147 0154 "
    "0158 0170 0194 0203 0205 0217 0225 0240"
)
EAS_CODES = frozenset(_EAS_LIST.split())

# The EAS code of each country's VAT number, where Peppol has one.
VAT_ENDPOINT_SCHEMES = {
    "AD": "9922", "AL": "9923", "AT": "9914", "BA": "9924", "BE": "9925", "BG": "9926", "CH": "9927",
    "CY": "9928", "CZ": "9929", "DE": "9930", "EE": "9931", "ES": "9920", "FR": "9957", "GB": "9932",
    "GR": "9933", "HR": "9934", "HU": "9910", "IE": "9935", "IT": "0211", "LI": "9936", "LT": "9937",
    "LU": "9938", "LV": "9939", "MC": "9940", "ME": "9941", "MK": "9942", "MT": "9943", "NL": "9944",
    "PL": "9945", "PT": "9946", "RO": "9947", "RS": "9948", "SI": "9949", "SK": "9950", "SM": "9951",
    "TR": "9952", "VA": "9953",
}  # fmt: skip
VAT_SCHEME_COUNTRY = {scheme: country for country, scheme in VAT_ENDPOINT_SCHEMES.items()}


def _stdnum(module: str):
    def check(value: str) -> bool:
        from importlib import import_module

        try:
            import_module(f"stdnum.{module}").validate(value)
        except StdnumError:
            return False
        return True

    return check


# Non-VAT schemes python-stdnum has a check-digit module for.
SCHEME_CHECKS = {
    "0009": _stdnum("fr.siret"),  # FR SIRET
    "0088": _stdnum("ean"),  # GLN (GS1 global location number)
    "0192": _stdnum("no.orgnr"),  # NO organisation number
    "0208": _stdnum("be.vat"),  # BE enterprise number (the VAT number's digits)
    "0184": _stdnum("dk.cvr"),  # DK CVR
    "9959": _stdnum("us.ein"),  # US employer identification number
}

PARTICIPANT_ID = re.compile(r"^(?P<scheme>\d{4}):(?P<value>\S{1,50})$")


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    value: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.value}"


def vat_id_with_prefix(vat_id: str, country: str) -> str:
    """BR-CO-09: a VAT id starts with its ISO country code (Greece: EL)."""
    vat_id = vat_id.replace(" ", "").upper()
    if vat_id[:2].isalpha():
        return vat_id
    return ("EL" if country == "GR" else country) + vat_id


def validate_participant_id(value: str) -> None:
    """Model field validator for a `SCHEME:VALUE` Peppol participant id."""
    from django.core.exceptions import ValidationError

    problem = participant_id_problem(value) if value else ""
    if problem:
        raise ValidationError(problem)


def participant_id_problem(participant_id: str) -> str:
    """Why `SCHEME:VALUE` is not a usable Peppol participant id ("" when it is)."""
    match = PARTICIPANT_ID.match(participant_id.strip())
    if not match:
        return f"Peppol id {participant_id!r} must be SCHEME:VALUE, e.g. 0208:0123456749 or 0088:4000001000005."
    scheme, value = match["scheme"], match["value"]
    if scheme not in EAS_CODES:
        return f"Peppol id scheme {scheme} is not in the Peppol Electronic Address Scheme code list."
    country = VAT_SCHEME_COUNTRY.get(scheme)
    if country and not vat_id_is_valid(value, country):
        return f"Peppol id {participant_id}: {value} is not a valid {country} VAT number."
    check = SCHEME_CHECKS.get(scheme)
    if check and not check(value):
        return f"Peppol id {participant_id}: {value} fails the check digits of scheme {scheme}."
    return ""


def endpoint_for(*, peppol_id: str, vat_id: str, country: str) -> Endpoint | None:
    """The party's Peppol electronic address, or None when it has none (never e-mail)."""
    if peppol_id.strip():
        scheme, _, value = peppol_id.strip().partition(":")
        return Endpoint(scheme, value)
    scheme = VAT_ENDPOINT_SCHEMES.get(country)
    if vat_id and scheme:
        return Endpoint(scheme, vat_id_with_prefix(vat_id, country))
    return None


# Leitweg-ID of a German public buyer [BT-10 of an XRechnung]: coarse address (2-12 digits), optional fine
# address (up to 30 letters or digits), two check digits (ISO 7064 mod 97-10 over the whole id, letters as numbers).
LEITWEG_ID = re.compile(r"^\d{2,12}(-[0-9A-Za-z]{1,30})?-\d{2}$")


def leitweg_id_problem(leitweg_id: str) -> str:
    """Why a Leitweg-ID is not well formed ("" when it is)."""
    from stdnum.iso7064 import mod_97_10

    value = leitweg_id.strip()
    if not LEITWEG_ID.match(value):
        return f"Leitweg-ID {value!r} must look like 991-33333TEST-33 (coarse address, fine address, check digits)."
    if not mod_97_10.is_valid(value.replace("-", "").upper()):
        return f"Leitweg-ID {value}: the check digits do not match."
    return ""


def validate_leitweg_id(value: str) -> None:
    """Model field validator for a Leitweg-ID."""
    from django.core.exceptions import ValidationError

    problem = leitweg_id_problem(value) if value else ""
    if problem:
        raise ValidationError(problem)
