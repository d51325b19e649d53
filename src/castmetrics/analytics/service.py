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


async def _raw_by_day(
    session: AsyncSession, scope: Scope, metric: str, days: list[date], zone: str = "UTC"
) -> dict[date, int]:
    if not days:
        return {}
    tz = ZoneInfo(zone)
    start = datetime.combine(min(days), time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(max(days) + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    query = (
        f"SELECT (e.occurred_at AT TIME ZONE :zone)::date AS day, {_raw_value(metric)} AS value "
        "FROM listener_events e WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end"
        f"{scope.raw_filter()} GROUP BY 1"
    )
    rows = await session.execute(
        text(query), {"t": scope.tenant_id, "scope_id": scope.id, "start": start, "end": end, "zone": zone}
    )
    wanted = set(days)
    return {row.day: int(row.value) for row in rows if row.day in wanted}


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
    if not days:
        return {}
    tz = ZoneInfo(zone)
    start = datetime.combine(min(days), time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(max(days) + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    query = (
        "SELECT e.event_type, count(*) AS value FROM listener_events e "
        "WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end "
        "AND (e.occurred_at AT TIME ZONE :zone)::date = ANY(:days)"
        f"{scope.raw_filter()} GROUP BY 1"
    )
    rows = await session.execute(
        text(query),
        {"t": scope.tenant_id, "scope_id": scope.id, "start": start, "end": end, "zone": zone, "days": days},
    )
    return {row.event_type: int(row.value) for row in rows}


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
