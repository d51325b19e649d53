"""Refreshing and rebuilding rollups of every kind from the invalidation log (``rollup_invalidations``).

Each kind belongs to the domain that counts it: listener rollups to events (``events.rollups``), download
rollups to measurement (``measurement.counting``). This module joins them, so neither domain imports the
other; a new kind of rollup is one entry in ``RECOMPUTE``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.session import Database
from castmetrics.events import rollups as listener_rollups
from castmetrics.jobs.app import for_each_tenant
from castmetrics.measurement import counting

log = structlog.get_logger(__name__)
MAX_LOG_ROWS = 50_000

# How each kind of rollup recomputes a set of UTC days of one tenant from raw rows.
RECOMPUTE: dict[str, Callable[[AsyncSession, uuid.UUID, Iterable[date]], Awaitable[None]]] = {
    "listener": listener_rollups.recompute,
    "download": counting.recompute,
}


async def _lock(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    # One refresh or rebuild per tenant at a time, across every worker.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"rollups:{tenant_id}"})


async def _recompute_kind(session: AsyncSession, tenant_id: uuid.UUID, kind: str, days: Iterable[date]) -> None:
    recompute = RECOMPUTE.get(kind)
    if recompute is None:  # a kind no domain registered here: never drop its log rows unread
        raise ValueError(f"no rollup of kind {kind!r}")
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


async def refresh_all(db: Database) -> int:
    """Refresh the rollups of every tenant with pending invalidations; answers the days recomputed."""
    total, tenants = await for_each_tenant(
        db, "SELECT rollup_pending_tenants()", refresh, failure_event="rollups.refresh_failed"
    )
    if total:
        log.info("rollups.refreshed", days=total, tenants=tenants)
    return total
