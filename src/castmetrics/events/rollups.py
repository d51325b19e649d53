"""Rollups: the continuous aggregates of listener events, per tenant, UTC day and episode.

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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

ALL_PODCASTS = uuid.UUID(int=0)  # listener_daily_uniques row for the whole tenant
MAX_LOG_ROWS = 50_000

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
_COUNT_EXPRESSIONS = ", ".join(f"count(*) FILTER (WHERE event_type = '{t}')" for t in COUNTS.values())

_RECOMPUTE = [
    "DELETE FROM listener_daily_rollups WHERE tenant_id = :t AND day = :day",
    f"""
    INSERT INTO listener_daily_rollups
        (tenant_id, day, episode_id, events, {_COUNT_COLUMNS}, unique_listeners, listen_seconds)
    SELECT :t, :day, episode_id, count(*), {_COUNT_EXPRESSIONS},
           count(DISTINCT listener_id), coalesce(sum({LISTENED}), 0)
    FROM listener_events
    WHERE tenant_id = :t AND occurred_at >= :start AND occurred_at < :end
    GROUP BY episode_id
    """,
    "DELETE FROM listener_daily_uniques WHERE tenant_id = :t AND day = :day",
    """
    INSERT INTO listener_daily_uniques (tenant_id, day, podcast_id, unique_listeners)
    SELECT :t, :day,
           CASE WHEN grouping(ep.podcast_id) = 1 THEN CAST(:all AS uuid) ELSE ep.podcast_id END,
           count(DISTINCT e.listener_id)
    FROM listener_events e
    LEFT JOIN episodes ep ON ep.tenant_id = e.tenant_id AND ep.id = e.episode_id
    WHERE e.tenant_id = :t AND e.occurred_at >= :start AND e.occurred_at < :end
    GROUP BY GROUPING SETS ((ep.podcast_id), ())
    HAVING grouping(ep.podcast_id) = 1 OR ep.podcast_id IS NOT NULL
    """,
]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


async def recompute(session: AsyncSession, tenant_id: uuid.UUID, days: Iterable[date]) -> None:
    """Replace the rollups of ``days`` with what the raw events say now."""
    for day in sorted(set(days)):
        start, end = day_bounds(day)
        params = {"t": tenant_id, "day": day, "start": start, "end": end, "all": ALL_PODCASTS}
        for statement in _RECOMPUTE:
            await session.execute(text(statement), params)


async def _lock(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    # One refresh or rebuild per tenant at a time, across every worker.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"rollups:{tenant_id}"})


async def _recompute_kind(session: AsyncSession, tenant_id: uuid.UUID, kind: str, days: Iterable[date]) -> None:
    if kind == "download":
        from castmetrics.measurement import counting  # the measurement domain owns download rollups

        await counting.recompute(session, tenant_id, days)
    else:
        await recompute(session, tenant_id, days)


async def refresh(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Recompute the days the invalidation log names, then remove the log rows read. Safe against
    concurrent ingestion: a batch committed after the log was read keeps its own log row. Answers
    the number of (kind, day) pairs recomputed."""
    await _lock(session, tenant_id)
    rows = (
        await session.execute(
            text("SELECT id, day, kind FROM rollup_invalidations WHERE tenant_id = :t ORDER BY id LIMIT :n"),
            {"t": tenant_id, "n": MAX_LOG_ROWS},
        )
    ).all()
    if not rows:
        return 0
    by_kind: dict[str, set[date]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, set()).add(row.day)
    for kind, days in sorted(by_kind.items()):
        await _recompute_kind(session, tenant_id, kind, days)
    await session.execute(
        text("DELETE FROM rollup_invalidations WHERE tenant_id = :t AND id = ANY(:ids)"),
        {"t": tenant_id, "ids": [row.id for row in rows]},
    )
    return sum(len(days) for days in by_kind.values())


async def rebuild(
    session: AsyncSession, tenant_id: uuid.UUID, first: date, last: date, kinds: tuple[str, ...] = ("listener",)
) -> int:
    """Recompute every day from ``first`` to ``last`` from raw events; answers the days done."""
    await _lock(session, tenant_id)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    pending = (
        (
            await session.execute(
                text(
                    "SELECT id FROM rollup_invalidations "
                    "WHERE tenant_id = :t AND day BETWEEN :a AND :b AND kind = ANY(:kinds)"
                ),
                {"t": tenant_id, "a": first, "b": last, "kinds": list(kinds)},
            )
        )
        .scalars()
        .all()
    )
    for kind in kinds:
        await _recompute_kind(session, tenant_id, kind, days)
    if pending:
        await session.execute(
            text("DELETE FROM rollup_invalidations WHERE tenant_id = :t AND id = ANY(:ids)"),
            {"t": tenant_id, "ids": list(pending)},
        )
    return len(days)


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
