"""Analytics answers: series, summaries, top episodes, breakdowns and launch curves.

Every answer is computed over *buckets*: contiguous instants ``[start, end)`` (an hour, a day, a week or
a month in the caller's time zone, or a whole period for a summary). What a metric is and which source
answers which buckets is the registry's (``metrics.py``); reading the daily and hourly rollups and raw
events, and leaving days with pending rollup invalidations to raw events, is the sources' (``sources.py``).
With ``from_raw=True`` every answer is computed from raw events alone — the reference the tests compare
the rollups with, metric by metric — except IAB listeners over more than a day, which only the HyperLogLog
sketches know (the daily salt hides a client across days).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.analytics.metrics import BY_NAME, LISTENER_TALLIES, REGISTRY, Measure, Reading
from castmetrics.analytics.metrics import LISTENER_METRICS as LISTENER_METRICS
from castmetrics.analytics.metrics import METRICS as METRICS
from castmetrics.analytics.metrics import TOP_METRICS as TOP_METRICS
from castmetrics.analytics.sources import ALL as ALL
from castmetrics.analytics.sources import DAILY_ROLLUP, HOURLY_ROLLUP, RAW_EVENTS, days_between, midnight, split
from castmetrics.analytics.sources import Bucket as Bucket
from castmetrics.analytics.sources import Scope as Scope
from castmetrics.analytics.sources import Unsupported as Unsupported
from castmetrics.analytics.sources import runs as runs
from castmetrics.events import rollups
from castmetrics.events.validation import LISTENER_TYPES
from castmetrics.measurement import counting

INTERVALS = ("hour", "day", "week", "month")
DIMENSIONS = ("country", "app", "device", "device_category")
LAUNCH_WINDOWS = (1, 7, 30, 90)


def bucket_start(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if interval == "month":
        return day.replace(day=1)
    return day


def make_buckets(first: date, last: date, zone: ZoneInfo, interval: str) -> list[Bucket]:
    """The buckets of the local days ``first``..``last``: hours, days, ISO weeks or months (a week or a
    month cut by the range is labelled by its own start and counts only the days inside the range)."""
    if interval == "hour":
        moment, end = midnight(first, zone), midnight(last + timedelta(days=1), zone)
        hours = []
        while moment < end:
            hours.append(Bucket(moment.astimezone(zone), moment, moment + timedelta(hours=1)))
            moment += timedelta(hours=1)
        return hours
    groups: dict[date, list[date]] = {}
    for day in days_between(first, last):
        groups.setdefault(bucket_start(day, interval), []).append(day)
    return [
        Bucket(
            datetime.combine(label, time.min, tzinfo=zone),
            midnight(days[0], zone),
            midnight(days[-1] + timedelta(days=1), zone),
        )
        for label, days in groups.items()
    ]


def period(first: date, last: date, zone: ZoneInfo) -> Bucket:
    return Bucket(
        datetime.combine(first, time.min, tzinfo=zone),
        midnight(first, zone),
        midnight(last + timedelta(days=1), zone),
    )


# --- metrics over buckets -----------------------------------------------------------------------------


async def series(
    session: AsyncSession, scope: Scope, metric: str, buckets: Sequence[Bucket], *, from_raw: bool = False
) -> tuple[list[float | None], bool]:
    """``metric`` per bucket; answers (values, whether they are estimates)."""
    chosen = BY_NAME[metric]
    reading = await chosen.measure.read(session, scope, buckets, from_raw=from_raw)
    return [chosen.of(reading.totals.get((index, None))) for index in range(len(buckets))], reading.estimate


async def unique_listeners(
    session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False
) -> list[int]:
    """Distinct listeners per bucket, exact: unions of the days' bitmaps, or raw events."""
    values, _ = await series(session, scope, "unique_listeners", buckets, from_raw=from_raw)
    return [int(value or 0) for value in values]


def change(value: float | None, previous: float | None) -> float | None:
    """Relative change against the previous period; null when there is nothing to compare with."""
    if value is None or not previous:
        return None
    return round((value - previous) / previous, 4)


async def summary(
    session: AsyncSession, scope: Scope, first: date, last: date, zone: ZoneInfo, *, from_raw: bool = False,
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:  # fmt: skip
    """Totals of ``metrics`` (default: every metric) over the local days ``first``..``last`` and over the
    period of the same length just before it, with the relative change."""
    length = (last - first).days + 1
    before = (first - timedelta(days=length), first - timedelta(days=1))
    buckets = [period(*before, zone), period(first, last, zone)]
    wanted = [metric for metric in REGISTRY if metric.name in metrics]
    readings: dict[Measure, Reading | None] = {}
    for measure in dict.fromkeys(metric.measure for metric in wanted):  # one read per measure
        try:
            readings[measure] = await measure.read(session, scope, buckets, from_raw=from_raw)
        except Unsupported:
            readings[measure] = None  # IAB listeners exist for UTC days only
    items = []
    for metric in wanted:
        reading = readings[metric.measure]
        previous: float | None = None
        value: float | None = None
        if reading is not None:
            previous, value = (metric.of(reading.totals.get((n, None))) for n in (0, 1))
        items.append(
            {
                "metric": metric.name,
                "value": value,
                "previous": previous,
                "change": change(value, previous),
                "estimate": reading is not None and reading.estimate,
            }
        )
    return {
        "from": first,
        "to": last,
        "previous_from": before[0],
        "previous_to": before[1],
        "tz": zone.key,
        "metrics": items,
    }


async def top_episodes(
    session: AsyncSession, scope: Scope, metric: str, first: date, last: date, zone: ZoneInfo, limit: int,
    *, from_raw: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """The scope's episodes ranked by ``metric`` over the period (ratios among episodes with plays)."""
    chosen = BY_NAME.get(metric)
    if chosen is None or not chosen.ranks_episodes:
        raise Unsupported(f"top episodes rank by one of {', '.join(TOP_METRICS)}", "metric")
    reading = await chosen.measure.read(session, scope, [period(first, last, zone)], from_raw=from_raw, by_episode=True)
    # Episodes come as the text of their ids (cheaper to read by the thousand than UUIDs), which order as
    # the ids do: most first, then by id.
    values: dict[str, float] = {}
    for (_, episode), totals in reading.totals.items():
        value = chosen.of(totals)
        if episode is not None and value:
            values[episode] = value
    ranked = [
        (uuid.UUID(episode), value)
        for episode, value in heapq.nsmallest(limit, values.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    if not ranked:
        return []
    rows = await session.execute(
        text("SELECT id, podcast_id, title, published_at FROM episodes WHERE tenant_id = :t AND id = ANY(:ids)"),
        {"t": scope.tenant_id, "ids": [episode for episode, _ in ranked]},
    )
    episodes = {row.id: row for row in rows}
    return [
        {
            "rank": rank,
            "episode_id": episode,
            "podcast_id": episodes[episode].podcast_id,
            "title": episodes[episode].title,
            "published_at": episodes[episode].published_at,
            "value": value,
        }
        for rank, (episode, value) in enumerate(ranked, 1)
        if episode in episodes
    ]


# --- breakdowns ---------------------------------------------------------------------------------------


async def event_type_breakdown(
    session: AsyncSession,
    scope: Scope,
    first: date,
    last: date,
    zone: ZoneInfo | None = None,
    *,
    from_raw: bool = False,
) -> list[dict[str, Any]]:
    """Listener events per type in the period, most frequent first."""
    whole = [period(first, last, zone or ZoneInfo("UTC"))]
    counts = (await LISTENER_TALLIES.read(session, scope, whole, from_raw=from_raw)).totals.get((0, None), {})
    totals = {event_type: int(counts.get(column, 0)) for column, event_type in rollups.COUNTS.items()}
    assert set(totals) == set(LISTENER_TYPES)
    ranked = sorted(((key, count) for key, count in totals.items() if count), key=lambda kv: (-kv[1], kv[0]))
    return [{"key": key, "count": count} for key, count in ranked]


async def download_breakdown(
    session: AsyncSession, scope: Scope, by: str, first: date, last: date, *, from_raw: bool = False
) -> list[dict[str, Any]]:
    """Downloads and listeners per country, app, device or device category over UTC days, most downloads
    first. Listeners per key add up each day's exact listeners (a client counts once a day)."""
    if by not in DIMENSIONS:
        raise ValueError(by)
    whole = period(first, last, ZoneInfo("UTC"))
    days = await split(session, scope, whole.start, whole.end, "download", everything_pending=from_raw)
    totals: dict[str, list[int]] = {}
    if days.from_rollups:
        for row in await DAILY_ROLLUP.breakdown(session, scope, by, days):
            totals[row.key] = [int(row.downloads), int(row.listeners)]
    for span in days.raw_spans():
        for row in await RAW_EVENTS.breakdown(session, scope, by, span):
            entry = totals.setdefault(row.key or counting.UNKNOWN, [0, 0])
            entry[0] += int(row.downloads)
            entry[1] += int(row.listeners)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [{"key": key, "downloads": value[0], "listeners": value[1]} for key, value in ranked]


# --- launch curves ------------------------------------------------------------------------------------


async def launch_curves(
    session: AsyncSession, scope: Scope, now: datetime, *, from_raw: bool = False
) -> dict[str, Any]:
    """Downloads in the first 1, 7, 30 and 90 days (24-hour periods from the hour of publication) of
    each published episode of the scope, newest first, and their average. A window that has not
    ended yet is null and left out of the average."""
    episodes = (
        await session.execute(
            text(
                "SELECT ep.id, ep.title, ep.published_at, date_trunc('hour', ep.published_at, 'UTC') AS launched "
                f"FROM episodes ep WHERE ep.tenant_id = :t AND ep.published_at IS NOT NULL{scope.episode_filter()} "
                "AND ep.published_at <= :now ORDER BY ep.published_at DESC, ep.id"
            ),
            scope.params(now=now),
        )
    ).all()
    sums: dict[uuid.UUID, list[int]] = {row.id: [0] * len(LAUNCH_WINDOWS) for row in episodes}
    if episodes:
        first = min(row.launched for row in episodes)
        last = min(
            max(row.launched for row in episodes) + timedelta(days=max(LAUNCH_WINDOWS)), now + timedelta(hours=1)
        )
        days = await split(session, scope, first, last, "download", everything_pending=from_raw)
        if days.from_rollups:
            for row in await HOURLY_ROLLUP.launch_windows(session, scope, days, LAUNCH_WINDOWS):
                if row.id in sums:
                    sums[row.id] = [int(getattr(row, f"day_{n}") or 0) for n in LAUNCH_WINDOWS]
        launched = {row.id: row.launched for row in episodes}
        for span in days.raw_spans():
            for row in await RAW_EVENTS.launch_hours(session, scope, span):
                if row.episode_id not in launched:
                    continue
                age = row.hour - launched[row.episode_id]
                for index, n in enumerate(LAUNCH_WINDOWS):
                    if timedelta(0) <= age < timedelta(days=n):
                        sums[row.episode_id][index] += int(row.n)
    items = []
    for row in episodes:
        item: dict[str, Any] = {"episode_id": row.id, "title": row.title, "published_at": row.published_at}
        for index, n in enumerate(LAUNCH_WINDOWS):
            item[f"day_{n}"] = sums[row.id][index] if row.launched + timedelta(days=n) <= now else None
        items.append(item)
    average: dict[str, Any] = {}
    for n in LAUNCH_WINDOWS:
        done = [item[f"day_{n}"] for item in items if item[f"day_{n}"] is not None]
        average[f"day_{n}"] = round(sum(done) / len(done), 1) if done else None
        average[f"episodes_{n}"] = len(done)
    return {"windows": list(LAUNCH_WINDOWS), "average": average, "episodes": items}
