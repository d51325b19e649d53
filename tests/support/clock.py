"""Fixed clocks for tests whose outcome depends on the weekday or the hour of "now"."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY = range(7)


def pinned(weekday: int, at: time, *, weeks_ago: int = 1, today: date | None = None) -> datetime:
    """``weekday`` (Monday is 0) at ``at`` UTC, in the week ``weeks_ago`` weeks before the current one
    (ISO weeks): the same moment whichever day of the week the tests run on, and at least
    ``7 * weeks_ago - 6`` days in the past.

    For code given a clock that still meets the real one further in (ingestion's accepted range under
    the retention, the prefix recorder, the partition maintenance): the weekday and the hour are fixed,
    and the date stays recent, so the clock never drifts out of the retention as the years go by."""
    if not 0 <= weekday <= 6:
        raise ValueError("weekday is 0 (Monday) to 6 (Sunday)")
    if weeks_ago < 1:
        raise ValueError("weeks_ago must be at least 1: the moment must not be in the future")
    day = today or datetime.now(UTC).date()
    monday = day - timedelta(days=day.weekday() + 7 * weeks_ago)
    return datetime.combine(monday + timedelta(days=weekday), at, tzinfo=UTC)
