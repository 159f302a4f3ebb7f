"""Money arithmetic: Decimal only, ROUND_HALF_UP to the currency's ISO 4217 minor unit."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache

from babel.numbers import is_currency
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString
from iso4217 import Currency

HUNDRED = Decimal("100")
ZERO = Decimal("0")
QUANTITY_QUANTUM = Decimal("0.01")

#: Minor units Billable stores: amounts are DecimalField(18, 2), so a currency with 3 or 4
#: decimals (KWD, BHD, JOD, OMR, TND, IQD, LYD, CLF…) would be rounded on its way into the
#: database. Such currencies are refused at entry instead (docs/rules/billing.md §12).
SUPPORTED_MINOR_UNITS = (0, 2)


@cache
def iso_minor_unit(currency: str) -> int | None:
    """ISO 4217's minor unit of a currency (HUF 2, JPY 0, KWD 3); None when unknown or not applicable."""
    try:
        return Currency(currency).exponent
    except (ValueError, KeyError):
        return None


def minor_unit(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 currency (EUR 2, HUF 2, JPY 0).

    From the ISO 4217 table itself, never from a locale's cash rounding (babel's
    precision gives HUF, IDR, COP 0). Unknown codes count as 2.
    """
    unit = iso_minor_unit(currency)
    return 2 if unit is None else unit


def unsupported_currency_reason(currency: str) -> str:
    """Why Billable refuses a currency ('' when it is supported): only ISO minor units 0 and 2."""
    unit = iso_minor_unit(currency)
    if unit is None or unit in SUPPORTED_MINOR_UNITS:
        return ""
    return (
        f"{currency} has {unit} decimal places (ISO 4217); Billable keeps amounts with 0 or 2 decimals "
        f"and would have to round {currency} amounts, so it does not support this currency."
    )


def unsupported_currencies() -> list[str]:
    """Every ISO 4217 code whose minor unit Billable cannot store (KWD, BHD, …), sorted."""
    return sorted(c.code for c in Currency if c.exponent is not None and c.exponent not in SUPPORTED_MINOR_UNITS)


@cache
def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round half up to the currency's minor unit (docs/rules/billing.md §1)."""
    return Decimal(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP)


def round_quantity(quantity: Decimal) -> Decimal:
    return Decimal(quantity).quantize(QUANTITY_QUANTUM, rounding=ROUND_HALF_UP)


def is_valid_currency(code: str) -> bool:
    return bool(code) and len(code) == 3 and code.isupper() and is_currency(code)


def format_amount(amount, currency: str) -> str:
    """`1234.5, EUR` → `1,234.50`; rounded half up to the currency's minor unit."""
    try:
        value = round_money(Decimal(amount), currency)
    except (InvalidOperation, TypeError, ValueError):
        return ""
    return f"{value:,}".replace("-", "−")


#: The markup of an amount (the `money` filter): every table cell of money goes through it.
MONEY_HTML = '<span class="money{}">{}{}<span class="money-ccy">{}</span></span>'


def money(amount, currency: str = "") -> str:
    """Render an amount as money: currency code, grouped digits, minus sign and a label if negative.

    What `format_html` would build, minus its per-call overhead (a dense table formats hundreds
    of amounts): the number is digits, separators and a minus sign only; the currency is escaped.
    """
    if amount is None or amount == "":
        return ""
    text = format_amount(amount, currency or "EUR")
    return SafeString(
        MONEY_HTML.format(
            " money-neg" if text.startswith("−") else "",
            text,
            " " if currency else "",
            conditional_escape(currency),
        )
    )
