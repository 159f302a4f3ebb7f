"""VAT id validation with python-stdnum's module for the client's country."""

from __future__ import annotations

from stdnum import get_cc_module
from stdnum.exceptions import ValidationError

# Countries whose stdnum module is not named after the ISO code.
_STDNUM_COUNTRY = {"GR": "gr", "EL": "gr"}

EU_MEMBER_STATES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)


def vat_id_is_valid(vat_id: str, country: str) -> bool:
    """True when stdnum's VAT module for `country` accepts `vat_id`.

    A country without a stdnum VAT module cannot be checked: the id is accepted
    as entered (a person confirmed it), so it does not block invoicing.
    """
    if not vat_id:
        return False
    module = get_cc_module(_STDNUM_COUNTRY.get(country.upper(), country.lower()), "vat")
    if module is None:
        return True
    try:
        module.validate(vat_id)
    except ValidationError:
        return False
    return True
