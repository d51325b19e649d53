"""Money: stored as integer minor units with an ISO 4217 code, answered in major units."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

# ISO 4217 minor-unit exponents other than 2 (the list's "minor unit" column).
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),  # fmt: skip
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def exponent(currency: str) -> int:
    """Digits after the decimal point of ``currency`` (2 for most, 0 for JPY, 3 for KWD)."""
    return _EXPONENTS.get(currency, 2)


def to_major(amount_minor: int | float | Decimal | Fraction, currency: str) -> float:
    """``amount_minor`` (possibly fractional, e.g. a CPM share) in major units of ``currency``,
    rounded once, at the end."""
    return float(Fraction(amount_minor) / 10 ** exponent(currency))
