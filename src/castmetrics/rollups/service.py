"""Refreshing and rebuilding rollups of every kind from the invalidation log (``rollup_invalidations``).

Each kind belongs to the domain that counts it: listener rollups to events (``events.rollups``), download
rollups to measurement (``measurement.counting``). This module joins them, so neither domain imports the
other; a new kind of rollup is one entry in ``RECOMPUTE`` (and in ``ADD`` when its rollups add up batch by
batch, so that a cycle costs what the new rows cost, whatever the day already holds).

A *cycle* (``refresh_cycle``: the periodic job and ``castmetrics rollups refresh``) visits every tenant with
pending log rows once. Per tenant it takes the oldest pending batches up to ``cycle_events`` stored rows
(at least one batch), so a tenant with a flood of new events cannot hold up the others: the rest waits for
the next cycle, and the days it touches are read from raw rows meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.errors import is_connection_error
from castmetrics.db.session import Database
from castmetrics.events import rollups as listener_rollups
from castmetrics.jobs.app import run_in_tenant
from castmetrics.measurement import counting

log = structlog.get_logger(__name__)
MAX_LOG_ROWS = 50_000


# How each kind of rollup recomputes a set of UTC days of one tenant from raw rows, answering the log rows
# ``taken`` (a kind that adds batches leaves out the rows of batches still pending besides them).
RECOMPUTE: dict[str, Callable[[AsyncSession, uuid.UUID, Iterable[date], Sequence[int]], Awaitable[None]]] = {
    "listener": listener_rollups.recompute,
    "download": counting.recompute,
}
# How a kind whose rollups add up brings one day up to date with new batches, reading only their rows. A kind
# missing here recomputes the days its batches touched.
ADD: dict[str, Callable[[AsyncSession, uuid.UUID, date, Sequence[int]], Awaitable[None]]] = {
    "listener": listener_rollups.add,
    "download": counting.add,
}
# What a kind does over a rebuild's chunk of days, in a transaction of its own, before the chunk is rebuilt.
PREPARE: dict[str, Callable[[AsyncSession, uuid.UUID, date, date], Awaitable[None]]] = {
    "listener": listener_rollups.number_listeners,
}
# Where each kind's raw rows are, and their time column: a batch's rows of one day are counted there when
# its log rows did not say how many there were (the prefix's recorder notes days only).
RAW_ROWS = {"listener": ("listener_events", "occurred_at"), "download": ("download_requests", "requested_at")}


@dataclass(frozen=True)
class Pending:
    """One batch's log rows of one kind and day (NULL batch: the day is to be recounted whole)."""

    kind: str
    day: date
    batch_id: int | None
    ids: list[int]
    events: int | None  # the rows the batch stored that day, when known


@dataclass
class TenantCycle:
    """What one cycle did for one tenant."""

    tenant_id: uuid.UUID
    buckets: int = 0  # (kind, day) pairs brought up to date
    events: int = 0  # new events and requests taken
    log_rows: int = 0


@dataclass
class Cycle:
    """What one cycle did: the tenants it visited, (kind, day) pairs, new rows taken and its own duration."""

    tenants: list[TenantCycle] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def buckets(self) -> int:
        return sum(t.buckets for t in self.tenants)

    @property
    def events(self) -> int:
        return sum(t.events for t in self.tenants)

    def as_dict(self) -> dict[str, int | float]:
        return {
            "tenants": len(self.tenants),
            "buckets": self.buckets,
            "events": self.events,
            "seconds": round(self.seconds, 3),
        }


async def _lock(session: AsyncSession, tenant_id: uuid.UUID, *, shared: bool = False) -> None:
    """One refresh per tenant at a time, across every worker, and none while a rebuild runs; the chunks of
    a rebuild (disjoint runs of days) take it shared and may run side by side."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await session.execute(text(f"SELECT {function}(hashtext(:k))"), {"k": f"rollups:{tenant_id}"})


async def _recompute_kind(
    session: AsyncSession, tenant_id: uuid.UUID, kind: str, days: Iterable[date], taken: Sequence[int]
) -> None:
    recompute = RECOMPUTE.get(kind)
    if recompute is None:  # a kind no domain registered here: never drop its log rows unread
        raise ValueError(f"no rollup of kind {kind!r}")
    await recompute(session, tenant_id, days, taken)


async def _bring_up_to_date(session: AsyncSession, tenant_id: uuid.UUID, kind: str, taken: list[Pending]) -> int:
    """Apply a kind's taken batches: added day by day where the kind adds up and every log row of the day
    names its batch, the whole day recomputed otherwise. Answers the days done."""
    add = ADD.get(kind)
    whole = {p.day for p in taken if add is None or p.batch_id is None}
    batches: dict[date, set[int]] = {}
    for pending in taken:
        if pending.day not in whole and pending.batch_id is not None:
            batches.setdefault(pending.day, set()).add(pending.batch_id)
    if add is not None:
        for day, day_batches in sorted(batches.items()):
            await add(session, tenant_id, day, sorted(day_batches))
    if whole:
        await _recompute_kind(session, tenant_id, kind, whole, [i for p in taken for i in p.ids])
    return len(whole) + len(batches)


async def _pending(session: AsyncSession, tenant_id: uuid.UUID) -> list[Pending]:
    """The tenant's pending log rows, one entry per (kind, day, batch), oldest first."""
    rows = await session.execute(
        text(
            "SELECT kind, day, batch_id, array_agg(id ORDER BY id) AS ids, "
            "CASE WHEN count(events) = count(*) THEN sum(events) END AS events "
            "FROM rollup_invalidations WHERE tenant_id = :t "
            "GROUP BY kind, day, batch_id ORDER BY min(id) LIMIT :n"
        ),
        {"t": tenant_id, "n": MAX_LOG_ROWS},
    )
    return [Pending(r.kind, r.day, r.batch_id, list(r.ids), None if r.events is None else int(r.events)) for r in rows]


async def _stored_rows(session: AsyncSession, tenant_id: uuid.UUID, pending: Pending) -> int:
    """How many rows a batch stored on its day, counted through the batch index (the log did not say)."""
    if pending.events is not None:
        return pending.events
    if pending.batch_id is None or pending.kind not in RAW_ROWS:
        return 0  # a whole day noted outside any batch: no new rows of its own
    table, moment = RAW_ROWS[pending.kind]
    start, end = listener_rollups.day_bounds(pending.day)
    found = await session.execute(
        text(
            f"SELECT count(*) FROM {table} WHERE tenant_id = :t AND batch_id = :b "
            f"AND {moment} >= :start AND {moment} < :end"
        ),
        {"t": tenant_id, "b": pending.batch_id, "start": start, "end": end},
    )
    return int(found.scalar_one())


async def _take(session: AsyncSession, tenant_id: uuid.UUID, cycle_events: int) -> tuple[list[Pending], int]:
    """The oldest pending batches up to ``cycle_events`` stored rows, and their rows. At least one batch
    with rows is taken whenever there is one, so a cycle that takes nothing new leaves nothing behind."""
    taken: list[Pending] = []
    events = 0
    for pending in await _pending(session, tenant_id):
        rows = await _stored_rows(session, tenant_id, pending)
        if events and events + rows > cycle_events:
            break
        taken.append(pending)
        events += rows
    return taken, events


async def refresh(session: AsyncSession, tenant_id: uuid.UUID, *, cycle_events: int = 1_000_000) -> TenantCycle:
    """Bring the rollups up to date with the tenant's oldest pending batches (up to ``cycle_events`` rows),
    then remove the log rows taken. Safe against concurrent ingestion: a batch committed after the log
    was read keeps its own log rows."""
    await _lock(session, tenant_id)
    # The cycle's statements read a few batches; over a big day the planner's estimates can pass the JIT
    # threshold, and compiling (10+ ms a statement) would cost more than the statements themselves.
    await session.execute(text("SET LOCAL jit = off"))
    done = TenantCycle(tenant_id)
    taken, done.events = await _take(session, tenant_id, cycle_events)
    if not taken:
        return done
    by_kind: dict[str, list[Pending]] = {}
    for pending in taken:
        by_kind.setdefault(pending.kind, []).append(pending)
    for kind, pending_of_kind in sorted(by_kind.items()):
        done.buckets += await _bring_up_to_date(session, tenant_id, kind, pending_of_kind)
    ids = [i for pending in taken for i in pending.ids]
    await session.execute(
        text("DELETE FROM rollup_invalidations WHERE tenant_id = :t AND id = ANY(:ids)"), {"t": tenant_id, "ids": ids}
    )
    done.log_rows = len(ids)
    return done


async def rebuild(
    session: AsyncSession, tenant_id: uuid.UUID, first: date, last: date, kinds: tuple[str, ...] = ("listener",)
) -> int:
    """Recompute every day from ``first`` to ``last`` from raw rows, in this transaction; answers the days
    done. The log rows pending for those days when it starts are answered with them; batches committed
    meanwhile keep theirs. (``rebuild_range`` splits a long range into transactions and skips days past the
    retention.)"""
    await _lock(session, tenant_id, shared=True)
    # One run of days is a few large statements: sorts and hashes in memory rather than on disk.
    await session.execute(text(f"SET LOCAL work_mem = '{REBUILD_WORK_MEM}'"))
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
        await _recompute_kind(session, tenant_id, kind, days, pending)
    if pending:
        await session.execute(
            text("DELETE FROM rollup_invalidations WHERE tenant_id = :t AND id = ANY(:ids)"),
            {"t": tenant_id, "ids": list(pending)},
        )
    return len(days)


REBUILD_WORK_MEM = "256MB"
REBUILD_CHUNK_DAYS = 31


@dataclass
class Rebuilt:
    """What ``rebuild_range`` did for one tenant: days rebuilt, and days left alone because their raw rows
    are past the retention (rebuilding them would erase the only copy of their totals)."""

    days: int = 0
    skipped: list[date] = field(default_factory=list)


def rebuild_chunks(first: date, last: date, keep_from: date, chunk_days: int = REBUILD_CHUNK_DAYS) -> tuple[
    list[tuple[date, date]], list[date]
]:  # fmt: skip
    """[first, last] cut into runs of at most ``chunk_days`` days that do not cross a month (a month's
    listener bitmaps are rebuilt once per chunk), and the days before ``keep_from`` left out."""
    skipped = [
        first + timedelta(days=n) for n in range(max(0, (min(last + timedelta(days=1), keep_from) - first).days))
    ]
    day = max(first, keep_from)
    chunks: list[tuple[date, date]] = []
    while day <= last:
        next_month = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        end = min(last, next_month - timedelta(days=1), day + timedelta(days=chunk_days - 1))
        chunks.append((day, end))
        day = end + timedelta(days=1)
    return chunks, skipped


async def rebuild_range(
    db: Database,
    tenant_id: uuid.UUID,
    first: date,
    last: date,
    kinds: tuple[str, ...],
    *,
    keep_from: date,
    progress: Callable[[int], None] | None = None,
    chunk_days: int = REBUILD_CHUNK_DAYS,
    jobs: int = 2,
) -> Rebuilt:
    """Rebuild a tenant's rollups of [first, last] from raw rows, a chunk of days per transaction (large
    statements over many days at once), ``jobs`` chunks at a time on as many connections; ``progress`` is
    told the days of each chunk done. Days before ``keep_from`` (the oldest day the retention keeps raw rows
    of) are skipped and reported, never cleared."""
    chunks, skipped = rebuild_chunks(first, last, keep_from, chunk_days)
    done = Rebuilt(skipped=skipped)
    # One unit of work per chunk and kind; the day counts once, when its last kind is done.
    queue = [(start, end, kind, kind == kinds[-1]) for start, end in chunks for kind in kinds]
    queue.reverse()

    async def worker() -> None:
        while queue:
            start, end, kind, last_kind = queue.pop()
            if kind in PREPARE:
                await run_in_tenant(db, str(tenant_id), PREPARE[kind], tenant_id, start, end)
            days = await run_in_tenant(db, str(tenant_id), rebuild, tenant_id, start, end, (kind,))
            if last_kind:
                done.days += days
                if progress is not None:
                    progress(days)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(jobs, len(queue)))):
            group.create_task(worker())
    return done


async def refresh_cycle(db: Database, *, cycle_events: int, tenant_ids: list[uuid.UUID] | None = None) -> Cycle:
    """One cycle: every tenant with pending log rows (or those of ``tenant_ids``), each in its own
    transaction, taking at most ``cycle_events`` of its stored rows. One tenant's failure is logged and
    does not hold up the others (a lost database connection stops the cycle)."""
    started = time.perf_counter()
    async with db.transaction() as session:
        # Fresh statistics for raw partitions a burst has outgrown (migration 0023), before they are read.
        analyzed = (await session.execute(text("SELECT castmetrics_analyze_grown()"))).scalar_one()
        if tenant_ids is None:
            tenant_ids = list((await session.execute(text("SELECT rollup_pending_tenants()"))).scalars())
    if analyzed:
        log.info("rollups.analyzed", tables=analyzed)
    cycle = Cycle()
    for tenant_id in tenant_ids:
        try:
            done = await run_in_tenant(db, str(tenant_id), refresh, tenant_id, cycle_events=cycle_events)
        except Exception as exc:
            if is_connection_error(exc):
                raise
            log.exception("rollups.refresh_failed", tenant_id=str(tenant_id))
            continue
        if done.log_rows:
            cycle.tenants.append(done)
    cycle.seconds = time.perf_counter() - started
    if cycle.tenants:
        log.info("rollups.refreshed", **cycle.as_dict())
    return cycle


async def refresh_while_pending(db: Database, *, cycle_events: int, budget_seconds: float) -> list[Cycle]:
    """Cycles one after the other while the last one took new rows and ``budget_seconds`` have not passed
    (the periodic job: a tenant ingesting faster than one bounded cycle per period takes would otherwise
    fall behind for good; every cycle still visits every tenant with pending work, each bounded)."""
    started = time.perf_counter()
    cycles = [await refresh_cycle(db, cycle_events=cycle_events)]
    while cycles[-1].events and time.perf_counter() - started < budget_seconds:
        cycles.append(await refresh_cycle(db, cycle_events=cycle_events))
    return cycles


async def refresh_all(db: Database, *, cycle_events: int = 1_000_000) -> int:
    """One cycle over every tenant with pending work; answers the (kind, day) pairs brought up to date."""
    return (await refresh_cycle(db, cycle_events=cycle_events)).buckets
