"""Money arithmetic: Decimal only, ROUND_HALF_UP to the currency's minor unit."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel.numbers import get_currency_precision, is_currency
from django.utils.html import format_html

HUNDRED = Decimal("100")
ZERO = Decimal("0")
QUANTITY_QUANTUM = Decimal("0.01")


def minor_unit(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 currency (EUR 2, JPY 0)."""
    return get_currency_precision(currency)


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


def money(amount, currency: str = "") -> str:
    """Render an amount as money: currency code, grouped digits, minus sign and a label if negative."""
    if amount is None or amount == "":
        return ""
    text = format_amount(amount, currency or "EUR")
    negative = text.startswith("−")
    return format_html(
        '<span class="money{}">{}{}<span class="money-ccy">{}</span></span>',
        " money-neg" if negative else "",
        text,
        " " if currency else "",
        currency,
    )
