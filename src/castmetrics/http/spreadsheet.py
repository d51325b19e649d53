"""CSV cells that are safe to open in a spreadsheet: text that would run as a formula is defused.

Episode titles come from third-party feeds and app names from user agents: a cell such as
``=HYPERLINK("https://evil.example", "open")`` must reach a spreadsheet as text, not as a formula.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

# Spreadsheets run a cell starting with one of these as a formula: text cells get a leading quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str | None) -> str:
    """A text cell, defused against spreadsheet formula injection."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def cell(value: Any) -> Any:
    """Any value as a CSV cell: empty for null, ISO 8601 for dates, true/false, defused text; numbers as
    they are (a negative number is a number, not a formula)."""
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return text_cell(value)
    return value
