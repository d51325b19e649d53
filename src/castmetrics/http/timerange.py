"""``from`` / ``to`` query values: a date, or a datetime with a zone. A date ``to`` includes its day."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from castmetrics.errors import Invalid


def parse_bound(value: str | None, *, name: str, end: bool, tz: ZoneInfo | None = None) -> datetime | None:
    """The instant a ``from`` (``end=False``) or ``to`` (``end=True``, exclusive) value stands for."""
    if value is None:
        return None
    zone = tz or UTC
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1) if end else day, time.min, tzinfo=zone)
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError) as exc:
        raise Invalid(f"{name} must be a date (2026-11-24) or a datetime with a zone", parameter=name) from exc
    if moment.tzinfo is None:
        raise Invalid(f"{name} needs a time zone (such as Z or +01:00)", parameter=name)
    return moment
