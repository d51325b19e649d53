"""Listener metrics by day for an episode, a podcast or the whole tenant.

Days whose rollups are current are read from ``listener_daily_rollups`` / ``listener_daily_uniques``;
days with pending invalidations (events accepted since the last refresh) are counted from raw events.
``from_raw`` answers the same question from raw events alone: the reference the tests compare with.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.events import rollups
from castmetrics.events.validation import LISTENER_TYPES
from castmetrics.measurement import counting, sketches

# metric -> (rollup column, raw expression)
COUNT_METRICS = {"plays": "play", "completes": "complete", "skips": "skip"}
METRICS = (*COUNT_METRICS, "unique_listeners")
TYPE_COLUMNS = {event_type: column for column, event_type in rollups.COUNTS.items()}


@dataclass(frozen=True)
class Scope:
    kind: str  # episode | podcast | tenant
    tenant_id: uuid.UUID
    id: uuid.UUID | None = None

    def raw_filter(self, alias: str = "e") -> str:
        if self.kind == "episode":
            return f" AND {alias}.episode_id = :scope_id"
        if self.kind == "podcast":
            return (
                f" AND {alias}.episode_id IN (SELECT id FROM episodes WHERE tenant_id = :t AND podcast_id = :scope_id)"
            )
        return ""


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _raw_value(metric: str) -> str:
    if metric == "unique_listeners":
        return "count(DISTINCT e.listener_id)"
    return f"count(*) FILTER (WHERE e.event_type = '{COUNT_METRICS[metric]}')"


def _runs(days: list[date]) -> list[list[date]]:
    """Days grouped into runs of consecutive days, so a raw recount of scattered pending days scans
    only their own partitions, not everything between them."""
    runs: list[list[date]] = []
    for day in sorted(set(days)):
        if runs and (day - runs[-1][-1]).days == 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _raw_params(scope: Scope, run: list[date], zone: str) -> dict[str, Any]:
    """Query parameters for raw events of one run of days in ``zone`` (its instants in UTC)."""
    tz = ZoneInfo(zone)
    start = datetime.combine(run[0], time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(run[-1] + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    return {"t": scope.tenant_id, "scope_id": scope.id, "start": start, "end": end, "zone": zone}


async def _raw_by_day(
    session: AsyncSession, scope: Scope, metric: str, days: list[date], zone: str = "UTC"
) -> dict[date, int]:
    query = text(
        f"SELECT (e.occurred_at AT TIME ZONE :zone)::date AS day, {_raw_value(metric)} AS value "
        "FROM listener_events e WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end"
        f"{scope.raw_filter()} GROUP BY 1"
    )
    values: dict[date, int] = {}
    for run in _runs(days):
        for row in await session.execute(query, _raw_params(scope, run, zone)):
            values[row.day] = int(row.value)
    return values


async def _rollup_by_day(session: AsyncSession, scope: Scope, metric: str, first: date, last: date) -> dict[date, int]:
    params: dict[str, Any] = {"t": scope.tenant_id, "scope_id": scope.id, "a": first, "b": last}
    if metric == "unique_listeners":
        if scope.kind == "episode":
            query = (
                "SELECT day, unique_listeners AS value FROM listener_daily_rollups "
                "WHERE tenant_id = :t AND episode_id = :scope_id AND day BETWEEN :a AND :b"
            )
        else:
            params["podcast"] = scope.id if scope.kind == "podcast" else rollups.ALL_PODCASTS
            query = (
                "SELECT day, unique_listeners AS value FROM listener_daily_uniques "
                "WHERE tenant_id = :t AND podcast_id = :podcast AND day BETWEEN :a AND :b"
            )
    else:
        column = metric
        where = "WHERE r.tenant_id = :t AND r.day BETWEEN :a AND :b" + scope.raw_filter("r")
        query = f"SELECT r.day, sum(r.{column}) AS value FROM listener_daily_rollups r {where} GROUP BY r.day"
    return {row.day: int(row.value) for row in await session.execute(text(query), params)}


async def timeseries(
    session: AsyncSession, scope: Scope, metric: str, first: date, last: date, zone: str = "UTC"
) -> list[tuple[date, int]]:
    """``metric`` per day from ``first`` to ``last`` (days in ``zone``), every day present."""
    days = _days(first, last)
    if zone != "UTC":  # rollups are UTC days; other zones' days are counted from raw events
        values = await _raw_by_day(session, scope, metric, days, zone)
    else:
        pending = await rollups.pending_days(session, scope.tenant_id, first, last)
        values = {
            day: value
            for day, value in (await _rollup_by_day(session, scope, metric, first, last)).items()
            if day not in pending
        }
        values.update(await _raw_by_day(session, scope, metric, sorted(pending)))
    return [(day, values.get(day, 0)) for day in days]


async def timeseries_from_raw(
    session: AsyncSession, scope: Scope, metric: str, first: date, last: date, zone: str = "UTC"
) -> list[tuple[date, int]]:
    """The same answer from raw events only (the reference)."""
    days = _days(first, last)
    values = await _raw_by_day(session, scope, metric, days, zone)
    return [(day, values.get(day, 0)) for day in days]


async def _raw_types(session: AsyncSession, scope: Scope, days: list[date], zone: str) -> dict[str, int]:
    query = text(
        "SELECT e.event_type, count(*) AS value FROM listener_events e "
        "WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end"
        f"{scope.raw_filter()} GROUP BY 1"
    )
    totals: dict[str, int] = {}
    for run in _runs(days):
        for row in await session.execute(query, _raw_params(scope, run, zone)):
            totals[row.event_type] = totals.get(row.event_type, 0) + int(row.value)
    return totals


async def event_type_breakdown(
    session: AsyncSession, scope: Scope, first: date, last: date, zone: str = "UTC", *, from_raw: bool = False
) -> list[dict[str, Any]]:
    """Listener events per type in the range, most frequent first."""
    totals = dict.fromkeys(sorted(LISTENER_TYPES), 0)
    if from_raw or zone != "UTC":
        raw_days = _days(first, last)
    else:
        pending = await rollups.pending_days(session, scope.tenant_id, first, last)
        raw_days = sorted(pending)
        sums = ", ".join(f"coalesce(sum(r.{column}), 0) AS {column}" for column in rollups.COUNTS)
        where = "WHERE r.tenant_id = :t AND r.day BETWEEN :a AND :b AND NOT (r.day = ANY(:pending))"
        row = (
            await session.execute(
                text(f"SELECT {sums} FROM listener_daily_rollups r {where}{scope.raw_filter('r')}"),
                {"t": scope.tenant_id, "scope_id": scope.id, "a": first, "b": last, "pending": raw_days},
            )
        ).one()
        for column, event_type in rollups.COUNTS.items():
            totals[event_type] += int(getattr(row, column))
    for event_type, value in (await _raw_types(session, scope, raw_days, zone)).items():
        totals[event_type] += value
    ranked = sorted(((key, count) for key, count in totals.items() if count), key=lambda kv: (-kv[1], kv[0]))
    return [{"key": key, "count": count} for key, count in ranked]


# --- downloads and listeners (IAB counting of prefix requests) ---------------------------------------

DOWNLOAD_METRICS = ("downloads", "listeners")
DIMENSIONS = ("country", "app", "device", "device_category")


def _scope_id(scope: Scope) -> uuid.UUID:
    return scope.id if scope.id is not None else counting.ALL_PODCASTS


async def _raw_downloads_day(session: AsyncSession, scope: Scope, day: date, group: str | None = None) -> Any:
    """(downloads, listeners) of ``scope`` on one UTC day counted from the recorded requests,
    optionally grouped by a dimension."""
    start, end = counting.day_bounds(day)
    inner = counting.downloads_query(scope.raw_filter("r"))
    key = f"d.{group}" if group else "NULL"
    rows = await session.execute(
        text(
            f"SELECT {key} AS key, count(*) AS downloads, count(DISTINCT d.client_hash) AS listeners "
            f"FROM ({inner}) d GROUP BY 1"
        ),
        {"t": scope.tenant_id, "scope_id": scope.id, "start": start, "end": end},
    )
    return rows.all()


async def downloads_by_day(
    session: AsyncSession, scope: Scope, metric: str, first: date, last: date
) -> dict[date, int]:
    """Daily ``downloads`` or exact daily ``listeners`` from rollups, and raw requests for pending days."""
    pending = await rollups.pending_days(session, scope.tenant_id, first, last, kind="download")
    params: dict[str, Any] = {"t": scope.tenant_id, "scope_id": scope.id, "a": first, "b": last}
    if metric == "downloads":
        query = (
            "SELECT d.day, sum(d.downloads) AS value FROM download_daily d "
            f"WHERE d.tenant_id = :t AND d.day BETWEEN :a AND :b{scope.raw_filter('d')} GROUP BY d.day"
        )
    else:
        params["scope"] = _scope_id(scope)
        query = (
            "SELECT day, listeners AS value FROM download_listeners_daily "
            "WHERE tenant_id = :t AND scope_id = :scope AND day BETWEEN :a AND :b"
        )
    values = {row.day: int(row.value) for row in await session.execute(text(query), params) if row.day not in pending}
    for day in sorted(pending):
        for row in await _raw_downloads_day(session, scope, day):
            values[day] = int(row.downloads if metric == "downloads" else row.listeners)
    return values


async def downloads_from_raw(
    session: AsyncSession, scope: Scope, metric: str, first: date, last: date
) -> dict[date, int]:
    """The same daily values counted from the recorded requests alone (the reference)."""
    values: dict[date, int] = {}
    for day in _days(first, last):
        for row in await _raw_downloads_day(session, scope, day):
            values[day] = int(row.downloads if metric == "downloads" else row.listeners)
    return values


def bucket_start(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if interval == "month":
        return day.replace(day=1)
    return day


async def download_series(
    session: AsyncSession, scope: Scope, metric: str, first: date, last: date, interval: str
) -> tuple[list[tuple[date, float]], bool]:
    """``downloads`` or ``listeners`` per day, week or month (UTC days); answers the points and
    whether they are estimates (listeners over more than a day come from HyperLogLog sketches)."""
    if interval == "day":
        values = await downloads_by_day(session, scope, metric, first, last)
        return [(day, float(values.get(day, 0))) for day in _days(first, last)], False
    buckets: dict[date, list[date]] = {}
    for day in _days(first, last):
        buckets.setdefault(bucket_start(day, interval), []).append(day)
    if metric == "downloads":
        daily = await downloads_by_day(session, scope, metric, first, last)
        return [(start, float(sum(daily.get(day, 0) for day in days))) for start, days in buckets.items()], False
    points = [
        (start, round(await sketches.estimate(session, scope.tenant_id, _scope_id(scope), days)))
        for start, days in buckets.items()
    ]
    return [(start, float(value)) for start, value in points], True


async def download_breakdown(
    session: AsyncSession, scope: Scope, by: str, first: date, last: date
) -> list[dict[str, Any]]:
    """Downloads and listeners per country, app, device or device category, most downloads first.
    Listeners per key add up each day's exact listeners (a client counts once a day)."""
    if by not in DIMENSIONS:
        raise ValueError(by)
    pending = await rollups.pending_days(session, scope.tenant_id, first, last, kind="download")
    totals: dict[str, list[int]] = {}
    rows = await session.execute(
        text(
            "SELECT key, sum(downloads) AS downloads, sum(listeners) AS listeners FROM download_breakdown_daily "
            "WHERE tenant_id = :t AND scope_id = :scope AND dimension = :by AND day BETWEEN :a AND :b "
            "AND NOT (day = ANY(:pending)) GROUP BY 1"
        ),
        {"t": scope.tenant_id, "scope": _scope_id(scope), "by": by, "a": first, "b": last, "pending": sorted(pending)},
    )
    for row in rows:
        totals[row.key] = [int(row.downloads), int(row.listeners)]
    for day in sorted(pending):
        for row in await _raw_downloads_day(session, scope, day, by):
            entry = totals.setdefault(row.key or counting.UNKNOWN, [0, 0])
            entry[0] += int(row.downloads)
            entry[1] += int(row.listeners)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [{"key": key, "downloads": value[0], "listeners": value[1]} for key, value in ranked]
