"""Server-rendered SVG charts: escaped text, a link per bar or point, gaps and empty states."""

from __future__ import annotations

from decimal import Decimal

from insights.charts import Point, bar_chart, column_chart, line_chart


def test_bar_chart_escapes_labels_and_links_each_bar():
    svg = bar_chart("Causes <b>", [Point("Rate & <script>", 3, "/insights/records/?metric=disputes&category=rate"),
                                   Point("Hours", 1, None)])
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "Causes &lt;b&gt;" in svg
    assert svg.count("<a href=") == 1 and "category=rate" in svg
    assert svg.count('class="bar"') == 2


def test_line_chart_leaves_gaps_and_draws_the_comparison():
    svg = line_chart("Trend", [Point("Jan", 1), Point("Feb", None), Point("Mar", Decimal("3.5"))],
                     compare=[2, 2, 2])
    assert svg.count('class="line"') == 2  # two segments around the missing month
    assert svg.count('class="dot"') == 2
    assert 'class="line2"' in svg


def test_empty_charts_say_so():
    assert "No data in this period" in line_chart("Trend", [Point("Jan", None)])
    assert "Nothing in this period" in bar_chart("Causes", [])
    assert "Nothing in this period" in column_chart("Aging", [Point("current", 0)])
    assert column_chart("Aging", [Point("current", 1500000)]).count("1.5M") == 1
