"""Rollups: the continuous aggregates of listener events, per tenant and scope (each episode, each
podcast, the whole tenant), by UTC day (``listener_daily``, with the day's listeners as a Roaring
bitmap of their per-tenant numbers, so unique listeners over any range are exact) and by UTC hour
(``listener_hourly``, for hourly series and days in other time zones).

Maintained incrementally from an invalidation log: every committed batch notes the days it wrote
(``rollup_invalidations``, with the batch's id, which its event rows carry too). ``add`` brings a day up
to date with new batches at a cost that follows the batches, whatever the day already holds: their
events' counts and listening time are added to the hourly and daily rows of the scopes they touch, their
listeners' numbers are OR-ed into the day's and the month's bitmaps. ``recompute`` replaces whole days
from raw events (log rows noted outside any batch, ``rebuild``); it leaves out the events of batches whose
log rows it was not given, which ``add`` will bring later. Queries read a day from its rollup only when the
day has no pending log row, and from raw events otherwise (real-time aggregation), so answers include
events accepted a second ago.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
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

# Number the listeners seen for the first time (dense per tenant; the tenant's lock is held).
_NUMBER = """
    WITH fresh AS (
        SELECT n.listener_id, row_number() OVER (ORDER BY n.listener_id) AS n
        FROM (
            SELECT DISTINCT e.listener_id FROM listener_events e
            WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end {numbering}
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
    """
_HOURLY = f"""
    INSERT INTO listener_hourly (tenant_id, scope_id, hour, events, {_COUNT_COLUMNS}, listen_seconds)
    SELECT :t, {_SCOPE}, e.hour, count(*), {_COUNT_EXPRESSIONS}, coalesce(sum(e.listened), 0)
    FROM (
        SELECT episode_id, event_type, date_trunc('hour', occurred_at, 'UTC') AS hour, {LISTENED} AS listened
        FROM listener_events e WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end {{events}}
    ) e
    LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = e.episode_id
    GROUP BY GROUPING SETS ((e.hour, e.episode_id), (e.hour, ep.podcast_id), (e.hour))
    {_SCOPES_HAVING}
    {{upsert}}
    """
_HOURLY_ADD = "ON CONFLICT (tenant_id, scope_id, hour) DO UPDATE SET " + ", ".join(
    f"{c} = listener_hourly.{c} + EXCLUDED.{c}" for c in ("events", *COUNTS, "listen_seconds")
)
_CLEAR = [
    "DELETE FROM listener_daily WHERE tenant_id = :t AND day = :day",
    "DELETE FROM listener_hourly WHERE tenant_id = :t AND hour >= :start AND hour < :end",
]
# Which events a statement reads: a whole day but those of batches still pending and not taken (they come
# later, through ``add``), or only the given batches.
_NOT_PENDING = (
    "AND NOT EXISTS (SELECT 1 FROM rollup_invalidations i WHERE i.tenant_id = :t AND i.kind = 'listener' "
    "AND i.day = :day AND i.batch_id = e.batch_id AND i.id <> ALL(CAST(:taken AS bigint[])))"
)
_OF_BATCHES = "AND e.batch_id = ANY(CAST(:batches AS bigint[]))"
# Per (episode, listener) first, then by scope: each pair's listener number is one index lookup, a plan
# that stays good whatever the statistics say about a table growing during a rebuild.
_DAILY = f"""
    SELECT CASE WHEN grouping(p.episode_id) = 0 THEN p.episode_id
                WHEN grouping(ep.podcast_id) = 0 THEN ep.podcast_id ELSE CAST(:all AS uuid) END AS scope_id,
           sum(p.events) AS events, {", ".join(f"sum(p.{c}) AS {c}" for c in COUNTS)},
           sum(p.listen_seconds) AS listen_seconds, array_agg(DISTINCT p.key) AS keys,
           grouping(p.episode_id) = 1 AS monthly
    FROM (
        SELECT e.episode_id,
               (SELECT k.key FROM listener_keys k WHERE k.tenant_id = :t AND k.listener_id = e.listener_id) AS key,
               count(*) AS events,
               {", ".join(f"count(*) FILTER (WHERE e.event_type = '{t}') AS {c}" for c, t in COUNTS.items())},
               coalesce(sum({LISTENED.replace("event_data", "e.event_data")}), 0) AS listen_seconds
        FROM listener_events e
        WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end {{events}}
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
    {{upsert}}
"""
# Counts add up; the listeners are the merged bitmap the caller computed.
_DAILY_ADD = (
    "ON CONFLICT (tenant_id, scope_id, day) DO UPDATE SET "
    + ", ".join(f"{c} = listener_daily.{c} + EXCLUDED.{c}" for c in ("events", *COUNTS, "listen_seconds"))
    + ", unique_listeners = EXCLUDED.unique_listeners, listeners = EXCLUDED.listeners"
)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


async def recompute(
    session: AsyncSession, tenant_id: uuid.UUID, days: Iterable[date], taken: Sequence[int] = ()
) -> None:
    """Replace the rollups of ``days`` with what the raw events say now: counts by scope and hour,
    and by scope and day with the day's listeners as a bitmap of their numbers. ``taken``: the log rows
    this work answers; the events of batches whose log rows are still pending besides them are left out,
    for ``add`` to bring when their turn comes (so no event is ever counted twice)."""
    for day in sorted(set(days)):
        start, end = day_bounds(day)
        params = {"t": tenant_id, "day": day, "start": start, "end": end, "all": ALL_PODCASTS, "taken": list(taken)}
        await session.execute(text(_NUMBER.format(numbering="")), params)
        for statement in _CLEAR:
            await session.execute(text(statement), params)
        await session.execute(text(_HOURLY.format(events=_NOT_PENDING, upsert="")), params)
        rows = (await session.execute(text(_DAILY.format(events=_NOT_PENDING)), params)).all()
        if rows:
            await _write_daily(session, params, rows, {row.scope_id: BitMap(row.keys) for row in rows}, upsert="")
    for month in sorted({day.replace(day=1) for day in days}):
        await recompute_month(session, tenant_id, month)


async def add(session: AsyncSession, tenant_id: uuid.UUID, day: date, batches: Sequence[int]) -> None:
    """Bring ``day``'s rollups up to date with the events of ``batches`` (which it must not hold yet):
    their counts added by scope and hour and by scope and day, their listeners (numbered when new) OR-ed
    into the day's and the month's bitmaps. Reads only those batches' events."""
    start, end = day_bounds(day)
    params = {"t": tenant_id, "day": day, "start": start, "end": end, "all": ALL_PODCASTS, "batches": list(batches)}
    await session.execute(text(_NUMBER.format(numbering=_OF_BATCHES)), params)
    await session.execute(text(_HOURLY.format(events=_OF_BATCHES, upsert=_HOURLY_ADD)), params)
    rows = (await session.execute(text(_DAILY.format(events=_OF_BATCHES)), params)).all()
    if not rows:
        return
    new = {row.scope_id: BitMap(row.keys) for row in rows}
    stored = await fetch_binary(
        session,
        "SELECT scope_id, listeners FROM listener_daily WHERE tenant_id = %(t)s AND day = %(day)s "
        "AND scope_id = ANY(%(scopes)s)",
        {"t": tenant_id, "day": day, "scopes": list(new)},
    )
    merged = dict(new)
    for scope_id, bitmap in stored:
        merged[scope_id] = BitMap.deserialize(bitmap) | new[scope_id]
    await _write_daily(session, params, rows, merged, upsert=_DAILY_ADD)
    monthly = {row.scope_id: new[row.scope_id] for row in rows if row.monthly}
    await _add_to_month(session, tenant_id, day.replace(day=1), monthly)


async def _write_daily(
    session: AsyncSession, params: dict[str, Any], rows: Sequence[Any], listeners: dict[uuid.UUID, BitMap], upsert: str
) -> None:
    """Insert (or with ``upsert``, add) the daily rows: counts from ``rows``, listeners from ``listeners``."""
    columns: dict[str, list[Any]] = {name: [] for name in ("scopes", "events", *COUNTS, "listen_seconds")}
    uniques, bitmaps = [], []
    for row in rows:
        columns["scopes"].append(row.scope_id)
        columns["events"].append(row.events)
        for name in (*COUNTS, "listen_seconds"):
            columns[name].append(getattr(row, name))
        members = listeners[row.scope_id]
        members.run_optimize()  # as BitMap(keys) does: a merged bitmap is stored as a recount's would be
        uniques.append(len(members))
        bitmaps.append(members.serialize())
    await session.execute(
        text(_INSERT_DAILY.format(upsert=upsert)), {**params, **columns, "uniques": uniques, "bitmaps": bitmaps}
    )


async def _add_to_month(session: AsyncSession, tenant_id: uuid.UUID, month: date, new: dict[uuid.UUID, BitMap]) -> None:
    """OR new listeners into the month's bitmaps of the podcasts and the whole tenant."""
    if not new:
        return
    stored = await fetch_binary(
        session,
        "SELECT scope_id, listeners FROM listener_monthly WHERE tenant_id = %(t)s AND month = %(month)s "
        "AND scope_id = ANY(%(scopes)s) FOR UPDATE",
        {"t": tenant_id, "month": month, "scopes": list(new)},
    )
    unions = dict(new)
    for scope_id, bitmap in stored:
        unions[scope_id] = BitMap.deserialize(bitmap) | new[scope_id]
    await _write_month(session, tenant_id, month, unions)


async def _write_month(
    session: AsyncSession, tenant_id: uuid.UUID, month: date, unions: dict[uuid.UUID, BitMap]
) -> None:
    for bitmap in unions.values():
        bitmap.run_optimize()
    await session.execute(
        text(
            "INSERT INTO listener_monthly (tenant_id, scope_id, month, unique_listeners, listeners) "
            "SELECT :t, u.scope_id, :month, u.n, u.bitmap FROM unnest(CAST(:scopes AS uuid[]), "
            "CAST(:counts AS bigint[]), CAST(:bitmaps AS bytea[])) AS u(scope_id, n, bitmap) "
            "ON CONFLICT (tenant_id, scope_id, month) DO UPDATE SET unique_listeners = EXCLUDED.unique_listeners, "
            "listeners = EXCLUDED.listeners"
        ),
        {
            "t": tenant_id,
            "month": month,
            "scopes": list(unions),
            "counts": [len(bitmap) for bitmap in unions.values()],
            "bitmaps": [bitmap.serialize() for bitmap in unions.values()],
        },
    )


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
        await _write_month(session, tenant_id, month, unions)


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
