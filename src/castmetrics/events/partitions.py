"""Day partitions of the event tables: created ahead, on demand for backfills, dropped by retention.

The DDL runs inside two SECURITY DEFINER functions owned by the migration role (the runtime role
owns nothing); each call is its own short transaction, never the ingesting one, because creating a
partition locks its parent table until commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy import text

from castmetrics.db.session import Database

log = structlog.get_logger(__name__)

SCHEMA = "castmetrics_events"
# The day-partitioned tables, by kind (download requests come from the measurement prefix).
TABLES = {"listener": "listener_events", "attribution": "attribution_events", "download": "download_requests"}
KINDS = tuple(TABLES)
AHEAD_DAYS = 7

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def runs_of_days(days: Iterable[date]) -> list[tuple[date, date]]:
    """Days as runs of consecutive days, each (first, last), in order."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def partition_name(kind: str, day: date) -> str:
    return f"{TABLES[kind]}_p{day:%Y%m%d}"


@dataclass(frozen=True)
class AcceptedRange:
    """Events must fall in [earliest, latest): older than the retention or more than a day ahead
    are refused per item."""

    earliest: datetime
    latest: datetime

    @classmethod
    def at(cls, now: datetime, retention_days: int) -> AcceptedRange:
        # Whole days: the oldest kept day is the one retention has not dropped yet.
        first_day = now.astimezone(UTC).date() - timedelta(days=retention_days - 1)
        return cls(datetime.combine(first_day, datetime.min.time(), tzinfo=UTC), now + timedelta(days=1))


class PartitionCache:
    """The days known to have partitions, per process, so ingestion asks the database only for new days."""

    def __init__(self) -> None:
        self._days: set[date] = set()

    def missing(self, days: Iterable[date]) -> list[date]:
        return sorted(set(days) - self._days)

    def add(self, days: Iterable[date]) -> None:
        self._days.update(days)

    def forget(self, days: Iterable[date]) -> None:
        self._days.difference_update(days)

    def clear(self) -> None:
        self._days.clear()


# One cache per database (a process normally has one; tests and tools may have several).
_CACHES: dict[str, PartitionCache] = {}


def cache_for(db: Database) -> PartitionCache:
    return _CACHES.setdefault(db.url, PartitionCache())


async def existing_days(db: Database) -> set[date]:
    """Days that have a partition of every event table."""
    async with db.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname ~ '_p[0-9]{8}$'"
            ),
            {"schema": SCHEMA},
        )
        per_table: dict[str, set[date]] = {table: set() for table in TABLES.values()}
        for (name,) in rows:
            table = name[: -len("_p00000000")]
            if table in per_table:
                per_table[table].add(datetime.strptime(name[-8:], "%Y%m%d").date())
    return set.intersection(*per_table.values())


# On Citus the event tables' indexes belong to each heap partition (``db.citus``: a day converted to columnar
# drops them); this function, which exists only there, makes them for new partitions.
_INDEX_FUNCTION = "public.castmetrics_event_partitions_index"


async def ensure(db: Database, first: date, last: date) -> int:
    """Create the missing partitions from ``first`` to ``last`` (inclusive); answers how many."""
    async with db.transaction() as session:
        params = {"first": first, "last": last}
        created = (
            await session.execute(text("SELECT castmetrics_event_partitions_ensure(:first, :last)"), params)
        ).scalar_one()
        # in the same transaction: no writer sees a partition without its unique key
        if created and (await session.execute(text("SELECT to_regproc(:f)"), {"f": _INDEX_FUNCTION})).scalar():
            await session.execute(text(f"SELECT {_INDEX_FUNCTION}(:first, :last)"), params)
    cache_for(db).add(first + timedelta(days=offset) for offset in range((last - first).days + 1))
    if created:
        log.info("events.partitions_created", first=str(first), last=str(last), tables=created)
    return int(created)


async def ensure_days(db: Database, days: Iterable[date]) -> None:
    """Make sure each day has its partitions; asks the database only about days not seen before."""
    cache = cache_for(db)
    missing = cache.missing(days)
    if not missing:
        return
    existing = await existing_days(db)
    cache.add(existing)
    for day in cache.missing(missing):
        await ensure(db, day, day)


async def drop_expired(db: Database, today: date, retention_days: int) -> list[str]:
    """Drop the partitions of days older than the retention (relative to ``today``)."""
    cutoff = today - timedelta(days=retention_days - 1)
    async with db.transaction() as session:
        dropped = list(
            (
                await session.execute(text("SELECT castmetrics_event_partitions_drop(:before)"), {"before": cutoff})
            ).scalars()
        )
    cache_for(db).clear()  # other days may be gone too; the cache refills from the catalog
    if dropped:
        log.info("events.partitions_dropped", before=str(cutoff), partitions=len(dropped))
    return dropped


async def to_columnar(db: Database, today: date, after_days: int, retention_days: int) -> list[str] | None:
    """On Citus, convert the day partitions older than ``after_days`` days to columnar storage (``db.citus``:
    their events' digests kept for idempotency, and dropped with their days past the retention); answers the
    partitions converted, or None where columnar storage does not exist (a single PostgreSQL server)."""
    async with db.transaction() as session:
        available = (
            await session.execute(text("SELECT to_regproc('public.castmetrics_event_partitions_columnar') IS NOT NULL"))
        ).scalar_one()
        if not available:
            return None
        await session.execute(
            text("SELECT castmetrics_event_digests_expire(:before)"),
            {"before": today - timedelta(days=retention_days - 1)},
        )
        converted = list(
            (
                await session.execute(
                    text("SELECT castmetrics_event_partitions_columnar(:before)"),
                    {"before": today - timedelta(days=after_days)},
                )
            ).scalars()
        )
    if converted:
        log.info("events.partitions_columnar", partitions=len(converted))
    return converted


async def maintain(
    db: Database, retention_days: int, now: datetime | None = None, *, columnar_after_days: int = 7
) -> dict[str, object]:
    """The hourly job (and start-up, and ``castmetrics partitions maintain``): partitions from yesterday to a
    week ahead, retention applied, and on Citus the days older than ``columnar_after_days`` made columnar
    (``columnar`` None on a single server)."""
    today = (now or utc_now()).astimezone(UTC).date()
    created = await ensure(db, today - timedelta(days=1), today + timedelta(days=AHEAD_DAYS))
    dropped = await drop_expired(db, today, retention_days)
    columnar = await to_columnar(db, today, columnar_after_days, retention_days)
    return {"created": created, "dropped": dropped, "columnar": columnar}
