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
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pyroaring import BitMap
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.binary import execute_binary, fetch_binary
from castmetrics.events.partitions import runs_of_days

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
              AND {unnumbered}
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
# Whether an event's listener has no number yet: whole days as an anti-join (the planner hashes the
# tenant's numbers once), a few batches one index probe per event (a subquery the planner cannot turn into
# a join that reads every number of the tenant: cost follows the batches, whatever the statistics say).
_UNNUMBERED_DAYS = "NOT EXISTS (SELECT 1 FROM listener_keys k WHERE k.tenant_id = :t AND k.listener_id = e.listener_id)"
_UNNUMBERED_BATCHES = (
    "(SELECT k.key FROM listener_keys k WHERE k.tenant_id = :t AND k.listener_id = e.listener_id) IS NULL"
)
# The new events' counts per (UTC hour, episode), worked out once (the one statement that reads their
# payloads); hourly rows of every scope, and the days' counts, are grouped from it.
_HOUR_COUNTS = f"""
    CREATE TEMPORARY TABLE hour_counts ON COMMIT DROP AS
    SELECT e.episode_id, date_trunc('hour', e.occurred_at, 'UTC') AS hour, count(*) AS events,
           {", ".join(f"count(*) FILTER (WHERE e.event_type = '{t}') AS {c}" for c, t in COUNTS.items())},
           coalesce(sum({LISTENED.replace("event_data", "e.event_data")}), 0) AS listen_seconds
    FROM listener_events e
    WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end {{events}}
    GROUP BY 1, 2
"""
_SUMS = ", ".join(f"sum(h.{c})" for c in ("events", *COUNTS, "listen_seconds"))
# Episode rows straight from ``hour_counts``, podcast and tenant rows grouped from it; in key order, which
# keeps the index writes of a large run of days local.
_HOURLY = f"""
    INSERT INTO listener_hourly (tenant_id, scope_id, hour, events, {_COUNT_COLUMNS}, listen_seconds)
    SELECT :t, x.* FROM (
        SELECT h.episode_id AS scope_id, h.hour, {", ".join(f"h.{c}" for c in ("events", *COUNTS, "listen_seconds"))}
        FROM hour_counts h
        UNION ALL
        SELECT coalesce(ep.podcast_id, CAST(:all AS uuid)), h.hour, {_SUMS}
        FROM hour_counts h
        LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = h.episode_id
        GROUP BY GROUPING SETS ((h.hour, ep.podcast_id), (h.hour))
        HAVING grouping(ep.podcast_id) = 1 OR ep.podcast_id IS NOT NULL
    ) x
    ORDER BY x.scope_id, x.hour
    {{upsert}}
"""
_HOURLY_ADD = "ON CONFLICT (tenant_id, scope_id, hour) DO UPDATE SET " + ", ".join(
    f"{c} = listener_hourly.{c} + EXCLUDED.{c}" for c in ("events", *COUNTS, "listen_seconds")
)
_CLEAR = [
    "DELETE FROM listener_daily WHERE tenant_id = :t AND day BETWEEN :first AND :last",
    "DELETE FROM listener_hourly WHERE tenant_id = :t AND hour >= :start AND hour < :end",
]
# Which events a statement reads: a whole day but those of batches still pending and not taken (they come
# later, through ``add``), or only the given batches.
_NOT_PENDING = (
    "AND NOT EXISTS (SELECT 1 FROM rollup_invalidations i WHERE i.tenant_id = :t AND i.kind = 'listener' "
    "AND i.day = (e.occurred_at AT TIME ZONE 'UTC')::date AND i.batch_id = e.batch_id "
    "AND i.id <> ALL(CAST(:taken AS bigint[])))"
)
_OF_BATCHES = "AND e.batch_id = ANY(CAST(:batches AS bigint[]))"
# The same in psycopg's parameter style, for the statements read in binary.
_NOT_PENDING_PS = _NOT_PENDING.replace(":t ", "%(t)s ").replace(":taken", "%(taken)s")
_OF_BATCHES_PS = _OF_BATCHES.replace(":batches", "%(batches)s")
# The days' listeners per episode: per (UTC day, episode) the listeners' numbers. A few new batches look
# each distinct listener's number up through the index; a run of whole days (``rebuild``) joins the
# tenant's numbers once and leaves repeated numbers to the bitmap (hashing a month's events beats sorting
# them for a distinct count). Both say whether a listener has no number yet. Podcast and tenant bitmaps
# are the unions of their episodes', made in Python (cheaper than a second distinct count).
_LISTENERS_LOOKUP = """
    SELECT p.day, p.episode_id,
           array_agg((SELECT k.key FROM listener_keys k WHERE k.tenant_id = %(t)s AND k.listener_id = p.listener_id))
    FROM (
        SELECT DISTINCT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.episode_id, e.listener_id
        FROM listener_events e
        WHERE e.tenant_id = %(t)s AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s {events}
    ) p
    GROUP BY p.day, p.episode_id
"""
_LISTENERS_JOIN = """
    SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.episode_id, array_agg(k.key)
    FROM listener_events e LEFT JOIN listener_keys k ON k.tenant_id = %(t)s AND k.listener_id = e.listener_id
    WHERE e.tenant_id = %(t)s AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s {events}
    GROUP BY 1, 2
"""
# The daily rows: counts of every scope grouped from ``hour_counts``, listeners from the bitmaps the caller
# made (joined by scope and day).
_INSERT_DAILY = f"""
    INSERT INTO listener_daily
        (tenant_id, scope_id, day, events, {_COUNT_COLUMNS}, listen_seconds, unique_listeners, listeners, recent)
    SELECT :t, c.scope_id, c.day, {", ".join(f"c.{c}" for c in ("events", *COUNTS, "listen_seconds"))},
           u.unique_listeners, coalesce(u.listeners, ''::bytea), u.recent
    FROM (
        SELECT coalesce(h.episode_id, ep.podcast_id, CAST(:all AS uuid)) AS scope_id,
               h.day,
               {", ".join(f"sum(h.{c}) AS {c}" for c in ("events", *COUNTS, "listen_seconds"))}
        FROM (SELECT *, (hour AT TIME ZONE 'UTC')::date AS day FROM hour_counts) h
        LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = h.episode_id
        GROUP BY GROUPING SETS ((h.day, h.episode_id), (h.day, ep.podcast_id), (h.day))
        HAVING grouping(h.episode_id) = 0 OR grouping(ep.podcast_id) = 1 OR ep.podcast_id IS NOT NULL
    ) c
    JOIN unnest(CAST(:scopes AS uuid[]), CAST(:days AS date[]), CAST(:uniques AS bigint[]),
                CAST(:bitmaps AS bytea[]), CAST(:recents AS bytea[]))
         AS u(scope_id, day, unique_listeners, listeners, recent)
      ON u.scope_id = c.scope_id AND u.day = c.day
    ORDER BY c.scope_id, c.day
    {{upsert}}
"""
# Counts add up; the listeners are what the caller worked out: a new whole bitmap (``recent`` then
# empty), or only ``recent`` (``listeners`` given as NULL, proposed as an empty value, which no serialized
# bitmap is: the stored bitmap stays as it is, not rewritten).
_DAILY_ADD = (
    "ON CONFLICT (tenant_id, scope_id, day) DO UPDATE SET "
    + ", ".join(f"{c} = listener_daily.{c} + EXCLUDED.{c}" for c in ("events", *COUNTS, "listen_seconds"))
    + ", unique_listeners = EXCLUDED.unique_listeners, "
    "listeners = CASE WHEN octet_length(EXCLUDED.listeners) = 0 THEN listener_daily.listeners "
    "ELSE EXCLUDED.listeners END, recent = EXCLUDED.recent"
)
# How large (serialized) a day's ``recent`` listeners may grow before they are folded into its bitmap:
# small enough to stay inside the row (no TOAST), and never more than a share (1/FOLD_SHARE) of the bitmap.
FOLD_BYTES = 2000
FOLD_SHARE = 4
# The month's totals of every scope: the new events' counts added (``add``; its day's month).
_TOTALS = ("events", *COUNTS, "listen_seconds")
_MONTH_ADD = f"""
    INSERT INTO listener_totals_monthly AS o (tenant_id, scope_id, month, {", ".join(_TOTALS)})
    SELECT :t, coalesce(h.episode_id, ep.podcast_id, CAST(:all AS uuid)), :month, {_SUMS}
    FROM hour_counts h
    LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = h.episode_id
    GROUP BY GROUPING SETS ((h.episode_id), (ep.podcast_id), ())
    HAVING grouping(h.episode_id) = 0 OR grouping(ep.podcast_id) = 1 OR ep.podcast_id IS NOT NULL
    ON CONFLICT (tenant_id, scope_id, month) DO UPDATE SET {", ".join(f"{c} = o.{c} + EXCLUDED.{c}" for c in _TOTALS)}
"""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# (scope, UTC day) -> the listeners' numbers
Listeners = dict[tuple[uuid.UUID, date], BitMap]


async def _day_listeners(
    session: AsyncSession, tenant_id: uuid.UUID, first: date, last: date, events: str, params: dict[str, Any]
) -> tuple[Listeners, set[uuid.UUID]]:
    """The listeners of every scope (episodes, their podcasts, the tenant) and day, from the events
    ``events`` picks in [first, last], and which scopes are podcasts or the tenant. Listeners without a
    number yet are numbered first."""
    start, end = day_bounds(first)[0], day_bounds(last)[1]
    whole_days = "batches" not in params
    query = (_LISTENERS_JOIN if whole_days else _LISTENERS_LOOKUP).format(events=events)
    query_params = {**params, "t": tenant_id, "start": start, "end": end}
    rows = await fetch_binary(session, query, query_params)
    if any(None in keys for _, _, keys in rows):
        await _number(session, "", query_params)
        rows = await fetch_binary(session, query, query_params)
    podcasts = {
        row.id: row.podcast_id
        for row in await session.execute(
            text("SELECT id, podcast_id FROM episodes WHERE tenant_id = :t AND id = ANY(:ids)"),
            {"t": tenant_id, "ids": list({row[1] for row in rows})},
        )
    }
    out: Listeners = {}
    wider: set[uuid.UUID] = {ALL_PODCASTS}
    for day, episode_id, keys in rows:
        listeners = BitMap(keys)
        out[(episode_id, day)] = listeners
        for scope in (podcasts.get(episode_id), ALL_PODCASTS):
            if scope is None:
                continue
            wider.add(scope)
            found = out.get((scope, day))
            if found is None:
                out[(scope, day)] = BitMap(listeners)
            else:
                found |= listeners
    return out, wider


async def _number(session: AsyncSession, events: str, params: dict[str, Any], *, batches: bool = False) -> None:
    """Number the listeners of the events ``events`` picks (whole days, or a few ``batches``) that have no
    number yet. One transaction of a tenant at a time (chunks of a rebuild run side by side): the next one
    reads what this one gave out."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"listener-numbers:{params['t']}"})
    unnumbered = _UNNUMBERED_BATCHES if batches else _UNNUMBERED_DAYS
    await session.execute(text(_NUMBER.format(numbering=events, unnumbered=unnumbered)), params)


async def number_listeners(session: AsyncSession, tenant_id: uuid.UUID, first: date, last: date) -> None:
    """Number the listeners of [first, last] seen for the first time, in a transaction of its own before a
    rebuild's chunk (so that chunks running side by side do not wait on each other's numbering)."""
    start, end = day_bounds(first)[0], day_bounds(last)[1]
    await _number(session, "", {"t": tenant_id, "start": start, "end": end})


async def _count_hours(session: AsyncSession, events: str, params: dict[str, Any]) -> None:
    """``hour_counts``: the counts per (hour, episode) of the events ``events`` picks."""
    await session.execute(text("DROP TABLE IF EXISTS pg_temp.hour_counts"))
    await session.execute(text(_HOUR_COUNTS.format(events=events)), params)


async def recompute(
    session: AsyncSession, tenant_id: uuid.UUID, days: Iterable[date], taken: Sequence[int] = ()
) -> None:
    """Replace the rollups of ``days`` with what the raw events say now: counts by scope and hour,
    and by scope and day with the day's listeners as a bitmap of their numbers. ``taken``: the log rows
    this work answers; the events of batches whose log rows are still pending besides them are left out,
    for ``add`` to bring when their turn comes (so no event is ever counted twice). Consecutive days are
    done together, a few statements for the whole run of days."""
    for first, last in runs_of_days(days):
        start, end = day_bounds(first)[0], day_bounds(last)[1]
        params = {"t": tenant_id, "first": first, "last": last, "start": start, "end": end, "all": ALL_PODCASTS}
        for statement in _CLEAR:
            await session.execute(text(statement), params)
        await _count_hours(session, _NOT_PENDING, {**params, "taken": list(taken)})
        await session.execute(text(_HOURLY.format(upsert="")), params)
        listeners, _ = await _day_listeners(session, tenant_id, first, last, _NOT_PENDING_PS, {"taken": list(taken)})
        await _write_daily(session, tenant_id, listeners, upsert="")
        for month in sorted({day.replace(day=1) for day in days_between(first, last)}):
            await recompute_month(session, tenant_id, month)
            await sum_month(session, tenant_id, month, "listener_daily", "listener_totals_monthly", _TOTALS)


async def add(session: AsyncSession, tenant_id: uuid.UUID, day: date, batches: Sequence[int]) -> None:
    """Bring ``day``'s rollups up to date with the events of ``batches`` (which it must not hold yet):
    their counts added by scope and hour and by scope and day, their listeners (numbered when new) OR-ed
    into the day's and the month's bitmaps. Reads only those batches' events."""
    start, end = day_bounds(day)
    params = {"t": tenant_id, "day": day, "start": start, "end": end, "all": ALL_PODCASTS, "batches": list(batches)}
    await _number(session, _OF_BATCHES, params, batches=True)
    await _count_hours(session, _OF_BATCHES, params)
    await session.execute(text(_HOURLY.format(upsert=_HOURLY_ADD)), params)
    new, wider = await _day_listeners(session, tenant_id, day, day, _OF_BATCHES_PS, {"batches": list(batches)})
    if not new:
        return
    stored = await fetch_binary(
        session,
        "SELECT scope_id, listeners, recent FROM listener_daily WHERE tenant_id = %(t)s AND day = %(day)s "
        "AND scope_id = ANY(%(scopes)s)",
        {"t": tenant_id, "day": day, "scopes": [scope for scope, _ in new]},
    )
    monthly = {scope: BitMap(listeners) for (scope, _), listeners in new.items() if scope in wider}
    # A stored day keeps its bitmap and gains the new listeners in ``recent`` (folded in once it grows):
    # the cycle writes what is new, not the day's every listener again.
    days = {key: DayListeners.of(members) for key, members in new.items()}
    for scope_id, bitmap, recent in stored:
        days[(scope_id, day)] = DayListeners.gained(bitmap, recent, new[(scope_id, day)])
    # Counts are added by the upsert; the listeners are as worked out.
    await _write_daily(session, tenant_id, days, upsert=_DAILY_ADD)
    await session.execute(text(_MONTH_ADD), {"t": tenant_id, "all": ALL_PODCASTS, "month": day.replace(day=1)})
    await _add_to_month(session, tenant_id, day.replace(day=1), monthly)


def day_listeners(listeners: bytes, recent: bytes | None) -> BitMap:
    """A stored day's listeners: its bitmap OR the listeners it gained since (``recent``)."""
    members = BitMap.deserialize(listeners)
    if recent is not None:
        members |= BitMap.deserialize(recent)
    return members


@dataclass
class DayListeners:
    """What a daily row's listener columns become: the whole bitmap to store (None: the stored one stays),
    the listeners gained since it was stored (``recent``), and the exact count of both."""

    whole: BitMap | None
    recent: BitMap | None
    count: int

    @classmethod
    def of(cls, members: BitMap) -> DayListeners:
        """A day written whole: these listeners, nothing gained since."""
        return cls(members, None, len(members))

    @classmethod
    def gained(cls, stored: bytes, recent: bytes | None, new: BitMap) -> DayListeners:
        """A stored day after ``new`` listeners: those it did not hold go to ``recent``, folded into a new
        whole bitmap once ``recent`` outgrows ``FOLD_BYTES`` or a share of the stored bitmap."""
        base = BitMap.deserialize(stored)
        gained = new - base
        if recent is not None:
            gained |= BitMap.deserialize(recent)
        count = len(base) + len(gained)
        if not gained:
            return cls(None, None, count)
        gained.run_optimize()
        if len(gained.serialize()) > min(FOLD_BYTES, len(stored) // FOLD_SHARE):
            return cls(base | gained, None, count)
        return cls(None, gained, count)


async def _write_daily(
    session: AsyncSession, tenant_id: uuid.UUID, listeners: dict[tuple[uuid.UUID, date], DayListeners] | Listeners,
    upsert: str,
) -> None:  # fmt: skip
    """Insert (or with ``upsert``, add) the daily rows of the days in ``hour_counts``: its counts, and the
    given listeners (bitmaps, or what ``add`` worked out)."""
    scopes, days, uniques, bitmaps, recents = [], [], [], [], []
    for (scope_id, day), members in listeners.items():
        row = members if isinstance(members, DayListeners) else DayListeners.of(members)
        for bitmap in (row.whole, row.recent):
            if bitmap is not None:
                bitmap.run_optimize()  # as BitMap(keys) does: a merged bitmap is stored as a recount's would be
        scopes.append(scope_id)
        days.append(day)
        uniques.append(row.count)
        bitmaps.append(None if row.whole is None else row.whole.serialize())
        recents.append(None if row.recent is None else row.recent.serialize())
    await execute_binary(
        session,
        _INSERT_DAILY.format(upsert=upsert),
        {
            "t": tenant_id, "all": ALL_PODCASTS, "scopes": scopes, "days": days, "uniques": uniques,
            "bitmaps": bitmaps, "recents": recents,
        },
    )  # fmt: skip


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
    await execute_binary(
        session,
        "INSERT INTO listener_monthly (tenant_id, scope_id, month, unique_listeners, listeners) "
        "SELECT :t, u.scope_id, CAST(:month AS date), u.n, u.bitmap FROM unnest(CAST(:scopes AS uuid[]), "
        "CAST(:counts AS bigint[]), CAST(:bitmaps AS bytea[])) AS u(scope_id, n, bitmap) "
        "ON CONFLICT (tenant_id, scope_id, month) DO UPDATE SET unique_listeners = EXCLUDED.unique_listeners, "
        "listeners = EXCLUDED.listeners",
        {
            "t": tenant_id,
            "month": month,
            "scopes": list(unions),
            "counts": [len(bitmap) for bitmap in unions.values()],
            "bitmaps": [bitmap.serialize() for bitmap in unions.values()],
        },
    )


async def sum_month(
    session: AsyncSession, tenant_id: uuid.UUID, month: date, daily: str, monthly: str, columns: Sequence[str]
) -> None:
    """A month's totals of every scope summed again from its daily rows (after whole days were replaced)."""
    end = (month + timedelta(days=32)).replace(day=1)
    params = {"t": tenant_id, "month": month, "end": end}
    await session.execute(text(f"DELETE FROM {monthly} WHERE tenant_id = :t AND month = :month"), params)
    await session.execute(
        text(
            f"INSERT INTO {monthly} (tenant_id, scope_id, month, {', '.join(columns)}) "
            f"SELECT :t, scope_id, :month, {', '.join(f'sum({c})' for c in columns)} FROM {daily} "
            "WHERE tenant_id = :t AND day >= :month AND day < :end GROUP BY scope_id"
        ),
        params,
    )


async def recompute_month(session: AsyncSession, tenant_id: uuid.UUID, month: date) -> None:
    """The month's listeners of each podcast and of the whole tenant: the union of its days' bitmaps."""
    end = (month + timedelta(days=32)).replace(day=1)
    await session.execute(
        text("DELETE FROM listener_monthly WHERE tenant_id = :t AND month = :month"), {"t": tenant_id, "month": month}
    )
    rows = await fetch_binary(
        session,
        "SELECT d.scope_id, d.listeners, d.recent FROM listener_daily d WHERE d.tenant_id = %(t)s "
        "AND d.day >= %(month)s AND d.day < %(end)s AND (d.scope_id = %(all)s "
        "OR d.scope_id IN (SELECT p.id FROM podcasts p WHERE p.tenant_id = %(t)s))",
        {"t": tenant_id, "month": month, "end": end, "all": ALL_PODCASTS},
    )
    unions: dict[uuid.UUID, BitMap] = {}
    for scope_id, bitmap, recent in rows:
        members = day_listeners(bitmap, recent)
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
