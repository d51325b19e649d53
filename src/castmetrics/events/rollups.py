"""Rollups: the continuous aggregates of listener events, per tenant and scope (each episode, each
podcast, the whole tenant), by UTC day (``listener_daily``, with the day's listeners as a Roaring
bitmap of their per-tenant numbers, so unique listeners over any range are exact) and by UTC hour
(``listener_hourly``, for hourly series and days in other time zones).

Maintained incrementally from an invalidation log: every committed batch notes the days it wrote
(``rollup_invalidations``); the refresh job recomputes exactly those days from raw events and
removes the log rows it read. Queries read a day from its rollup only when the day has no pending
log row, and from raw events otherwise (real-time aggregation), so answers include events accepted
a second ago. ``rebuild`` recomputes any date range from raw events with the same code.

Why recompute whole days instead of adding deltas: distinct listeners cannot be summed, and a day
of one tenant is small next to what a delta table would cost at every batch; ingestion only appends
one log row per day it touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pyroaring import BitMap
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.binary import fetch_binary

ALL_PODCASTS = uuid.UUID(int=0)  # the scope of the whole tenant

# "listened_seconds" only counts when it is a number (ingestion validates it; this guards old rows).
LISTENED = (
    "CASE WHEN jsonb_typeof(event_data -> 'listened_seconds') = 'number' "
    "THEN (event_data ->> 'listened_seconds')::numeric END"
)
COUNTS = {
    "downloads": "download",
    "plays": "play",
    "pauses": "pause",
    "resumes": "resume",
    "seeks": "seek",
    "skips": "skip",
    "progresses": "progress",
    "completes": "complete",
}
_COUNT_COLUMNS = ", ".join(COUNTS)
_COUNT_EXPRESSIONS = ", ".join(f"count(*) FILTER (WHERE e.event_type = '{t}')" for t in COUNTS.values())
# The scope of a grouping-sets row: the episode, its podcast, or the whole tenant (all zeros).
_SCOPE = (
    "CASE WHEN grouping(e.episode_id) = 0 THEN e.episode_id "
    "WHEN grouping(ep.podcast_id) = 0 THEN ep.podcast_id ELSE CAST(:all AS uuid) END"
)
_SCOPES_HAVING = "HAVING grouping(e.episode_id) = 0 OR grouping(ep.podcast_id) = 1 OR ep.podcast_id IS NOT NULL"

_RECOMPUTE = [
    # Number the listeners seen for the first time (dense per tenant; the tenant's lock is held).
    """
    WITH fresh AS (
        SELECT n.listener_id, row_number() OVER (ORDER BY n.listener_id) AS n
        FROM (
            SELECT DISTINCT e.listener_id FROM listener_events e
            WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end
              AND NOT EXISTS (SELECT 1 FROM listener_keys k WHERE k.tenant_id = :t AND k.listener_id = e.listener_id)
        ) n
    ), numbered AS (
        INSERT INTO listener_keys (tenant_id, listener_id, key)
        SELECT :t, fresh.listener_id,
               coalesce((SELECT last_key FROM listener_key_counters WHERE tenant_id = :t), 0) + fresh.n
        FROM fresh
        RETURNING key
    )
    INSERT INTO listener_key_counters (tenant_id, last_key)
    SELECT :t, max(key) FROM numbered HAVING count(*) > 0
    ON CONFLICT (tenant_id) DO UPDATE SET last_key = EXCLUDED.last_key
    """,
    "DELETE FROM listener_daily WHERE tenant_id = :t AND day = :day",
    "DELETE FROM listener_hourly WHERE tenant_id = :t AND hour >= :start AND hour < :end",
    f"""
    INSERT INTO listener_hourly (tenant_id, scope_id, hour, events, {_COUNT_COLUMNS}, listen_seconds)
    SELECT :t, {_SCOPE}, e.hour, count(*), {_COUNT_EXPRESSIONS}, coalesce(sum(e.listened), 0)
    FROM (
        SELECT episode_id, event_type, date_trunc('hour', occurred_at, 'UTC') AS hour, {LISTENED} AS listened
        FROM listener_events WHERE tenant_id = :t AND occurred_at >= :start AND occurred_at < :end
    ) e
    LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = e.episode_id
    GROUP BY GROUPING SETS ((e.hour, e.episode_id), (e.hour, ep.podcast_id), (e.hour))
    {_SCOPES_HAVING}
    """,
]
# Per (episode, listener) first, then by scope: each pair's listener number is one index lookup, a plan
# that stays good whatever the statistics say about a table growing during a rebuild.
_DAILY = f"""
    SELECT CASE WHEN grouping(p.episode_id) = 0 THEN p.episode_id
                WHEN grouping(ep.podcast_id) = 0 THEN ep.podcast_id ELSE CAST(:all AS uuid) END AS scope_id,
           sum(p.events) AS events, {", ".join(f"sum(p.{c}) AS {c}" for c in COUNTS)},
           sum(p.listen_seconds) AS listen_seconds, array_agg(DISTINCT p.key) AS keys
    FROM (
        SELECT e.episode_id,
               (SELECT k.key FROM listener_keys k WHERE k.tenant_id = :t AND k.listener_id = e.listener_id) AS key,
               count(*) AS events,
               {", ".join(f"count(*) FILTER (WHERE e.event_type = '{t}') AS {c}" for c, t in COUNTS.items())},
               coalesce(sum({LISTENED.replace("event_data", "e.event_data")}), 0) AS listen_seconds
        FROM listener_events e
        WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end
        GROUP BY e.episode_id, e.listener_id
    ) p
    LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = p.episode_id
    GROUP BY GROUPING SETS ((p.episode_id), (ep.podcast_id), ())
    HAVING count(*) > 0 AND (grouping(p.episode_id) = 0 OR grouping(ep.podcast_id) = 1 OR ep.podcast_id IS NOT NULL)
"""
_INSERT_DAILY = f"""
    INSERT INTO listener_daily
        (tenant_id, scope_id, day, events, {_COUNT_COLUMNS}, listen_seconds, unique_listeners, listeners)
    SELECT :t, u.scope_id, :day, u.events, {", ".join(f"u.{c}" for c in COUNTS)}, u.listen_seconds,
           u.unique_listeners, u.listeners
    FROM unnest(CAST(:scopes AS uuid[]), CAST(:events AS bigint[]),
                {", ".join(f"CAST(:{c} AS bigint[])" for c in COUNTS)},
                CAST(:listen_seconds AS numeric[]), CAST(:uniques AS bigint[]), CAST(:bitmaps AS bytea[]))
         AS u(scope_id, events, {_COUNT_COLUMNS}, listen_seconds, unique_listeners, listeners)
"""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


async def recompute(session: AsyncSession, tenant_id: uuid.UUID, days: Iterable[date]) -> None:
    """Replace the rollups of ``days`` with what the raw events say now: counts by scope and hour,
    and by scope and day with the day's listeners as a bitmap of their numbers."""
    for day in sorted(set(days)):
        start, end = day_bounds(day)
        params = {"t": tenant_id, "day": day, "start": start, "end": end, "all": ALL_PODCASTS}
        for statement in _RECOMPUTE:
            await session.execute(text(statement), params)
        rows = (await session.execute(text(_DAILY), params)).all()
        if not rows:
            continue
        columns: dict[str, list[Any]] = {name: [] for name in ("scopes", "events", *COUNTS, "listen_seconds")}
        uniques, bitmaps = [], []
        for row in rows:
            columns["scopes"].append(row.scope_id)
            columns["events"].append(row.events)
            for name in (*COUNTS, "listen_seconds"):
                columns[name].append(getattr(row, name))
            members = BitMap(row.keys)
            uniques.append(len(members))
            bitmaps.append(members.serialize())
        await session.execute(text(_INSERT_DAILY), {**params, **columns, "uniques": uniques, "bitmaps": bitmaps})
    for month in sorted({day.replace(day=1) for day in days}):
        await recompute_month(session, tenant_id, month)


async def recompute_month(session: AsyncSession, tenant_id: uuid.UUID, month: date) -> None:
    """The month's listeners of each podcast and of the whole tenant: the union of its days' bitmaps."""
    end = (month + timedelta(days=32)).replace(day=1)
    await session.execute(
        text("DELETE FROM listener_monthly WHERE tenant_id = :t AND month = :month"), {"t": tenant_id, "month": month}
    )
    rows = await fetch_binary(
        session,
        "SELECT d.scope_id, d.listeners FROM listener_daily d WHERE d.tenant_id = %(t)s "
        "AND d.day >= %(month)s AND d.day < %(end)s AND (d.scope_id = %(all)s "
        "OR d.scope_id IN (SELECT p.id FROM podcasts p WHERE p.tenant_id = %(t)s))",
        {"t": tenant_id, "month": month, "end": end, "all": ALL_PODCASTS},
    )
    unions: dict[uuid.UUID, BitMap] = {}
    for scope_id, bitmap in rows:
        members = BitMap.deserialize(bitmap)
        if scope_id in unions:
            unions[scope_id] |= members
        else:
            unions[scope_id] = members
    if unions:
        await session.execute(
            text(
                "INSERT INTO listener_monthly (tenant_id, scope_id, month, unique_listeners, listeners) "
                "SELECT :t, u.scope_id, :month, u.n, u.bitmap FROM unnest(CAST(:scopes AS uuid[]), "
                "CAST(:counts AS bigint[]), CAST(:bitmaps AS bytea[])) AS u(scope_id, n, bitmap)"
            ),
            {
                "t": tenant_id,
                "month": month,
                "scopes": list(unions),
                "counts": [len(bitmap) for bitmap in unions.values()],
                "bitmaps": [bitmap.serialize() for bitmap in unions.values()],
            },
        )


async def pending_days(
    session: AsyncSession, tenant_id: uuid.UUID, first: date, last: date, kind: str = "listener"
) -> set[date]:
    """Days in [first, last] whose rollups of ``kind`` are not current: they are read from raw rows."""
    return set(
        (
            await session.execute(
                text(
                    "SELECT DISTINCT day FROM rollup_invalidations "
                    "WHERE tenant_id = :t AND kind = :kind AND day BETWEEN :a AND :b"
                ),
                {"t": tenant_id, "a": first, "b": last, "kind": kind},
            )
        ).scalars()
    )
