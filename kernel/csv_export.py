"""CSV exports that a spreadsheet opens as data, never as formulas (CSV/formula injection, OWASP).

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula
by Excel, LibreOffice and Google Sheets — a client name like `=HYPERLINK(...)` would then act
in finance's spreadsheet. Such a cell is written with a leading single quote, which the
spreadsheet shows as text (docs/decisions/0036-csv-and-parameters.md). Plain numbers (`-120.50`)
are left as they are: they cannot be formulas and must stay numbers for the reader's sums.
Every CSV the portal writes goes through `csv_writer`.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?\Z")


def neutralise_cell(value: Any) -> Any:
    """`value` as written to a CSV cell: text that a spreadsheet would evaluate gets a leading `'`."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)  # Decimal, dates, lazy strings: their text is what lands in the cell
    if text.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


class SafeCsvWriter:
    """A `csv.writer` whose rows are neutralised cell by cell; `writerow` returns what the target returned."""

    def __init__(self, target: Any, **kwargs: Any):
        self._writer = csv.writer(target, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([neutralise_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(target: Any, **kwargs: Any) -> SafeCsvWriter:
    """The one way the portal writes CSV (like `csv.writer(target, **kwargs)`, cells neutralised)."""
    return SafeCsvWriter(target, **kwargs)
