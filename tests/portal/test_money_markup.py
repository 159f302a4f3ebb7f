"""The `money` markup, built without format_html for speed, is exactly what it was: same spans, currency escaped."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils.safestring import SafeString

from kernel.money import money


@pytest.mark.parametrize(
    ("amount", "currency", "html"),
    [
        (Decimal("1234.5"), "EUR", '<span class="money">1,234.50 <span class="money-ccy">EUR</span></span>'),
        (Decimal("-99.995"), "EUR", '<span class="money money-neg">−100.00 <span class="money-ccy">EUR</span></span>'),
        (Decimal("1234567"), "JPY", '<span class="money">1,234,567 <span class="money-ccy">JPY</span></span>'),
        ("12.5", "", '<span class="money">12.50<span class="money-ccy"></span></span>'),
        (0, "USD", '<span class="money">0.00 <span class="money-ccy">USD</span></span>'),
        ("not a number", "EUR", '<span class="money"> <span class="money-ccy">EUR</span></span>'),
        (Decimal("1"), "<b>", '<span class="money">1.00 <span class="money-ccy">&lt;b&gt;</span></span>'),
    ],
)
def test_money_markup(amount, currency, html):
    rendered = money(amount, currency)
    assert rendered == html and isinstance(rendered, SafeString)


@pytest.mark.parametrize("empty", [None, ""])
def test_money_of_nothing_is_empty(empty):
    assert money(empty, "EUR") == ""
