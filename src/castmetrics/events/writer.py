"""Writing a validated batch: COPY straight into the day partitions, or an upsert when it repeats (on a
Citus cluster, a columnar day's events are first checked against the day's digests: see ``_claim_digests``).

PostgreSQL refuses ``COPY FROM`` into a table with row-level security, so the fast path appends to
the day partitions themselves (the runtime role may only INSERT there, and a statement trigger on
each partition refuses rows of another tenant). A batch that repeats events already stored meets a
unique violation; the savepoint is rolled back and the batch goes through a temporary staging table
and ``INSERT … ON CONFLICT DO NOTHING`` on the parent, where row-level security checks every row.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.citus import DIGEST_BYTES
from castmetrics.events.partitions import SCHEMA, TABLES, partition_name
from castmetrics.events.validation import utc_day

COLUMNS = {
    "listener": ("tenant_id", "id", "episode_id", "listener_id", "event_type", "event_data", "occurred_at"),
    "attribution": (
        "tenant_id",
        "id",
        "campaign_id",
        "episode_id",
        "listener_id",
        "attribution_type",
        "attribution_data",
        "occurred_at",
    ),
    # Prefix requests (measurement.recorder builds these rows); the partition key is last here too.
    "download": (
        "tenant_id",
        "id",
        "episode_id",
        "url",
        "client_hash",
        "user_agent",
        "referer",
        "method",
        "range_header",
        "range_bytes",
        "is_probe",
        "is_bot",
        "agent_type",
        "app",
        "device",
        "device_category",
        "os",
        "browser",
        "country",
        "requested_at",
    ),  # fmt: skip
}
TYPES = {
    "listener": ("uuid", "uuid", "uuid", "text", "text", "jsonb", "timestamptz"),
    "attribution": ("uuid", "uuid", "uuid", "uuid", "text", "text", "jsonb", "timestamptz"),
    "download": (
        "uuid",
        "uuid",
        "uuid",
        "text",
        "bytea",
        "text",
        "text",
        "text",
        "text",
        "int8",
        "bool",
        "bool",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "timestamptz",
    ),  # fmt: skip
}


class _JsonbBytes(Dumper):
    """Writes already-encoded JSON (bytes from orjson) as binary jsonb: a version byte, then the text."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + bytes(obj)


class _UuidBinary(Dumper):
    """psycopg's binary uuid dumper with one Python call fewer per value (three per event)."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return obj.int.to_bytes(16, "big")  # type: ignore[no-any-return]


# The transaction's ingestion batch (migration 0019): one number per transaction, kept in a transaction-local
# setting that ``batch_id`` of the event, request and invalidation-log rows defaults to, so everything one
# transaction stores and notes carries the same id and the rollup refresh can read exactly that batch.
_TAKE_BATCH = (
    "SELECT set_config('castmetrics.ingest_batch', coalesce(nullif(current_setting('castmetrics.ingest_batch', "
    "true), ''), nextval('ingest_batches')::text), true)"
)


@dataclass(frozen=True)
class Written:
    """How many rows were new, and which (by position in the batch) when not all were."""

    accepted: int
    new_positions: list[int] | None  # None: every row was new


async def _driver(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    return driver


async def _copy(
    cursor: psycopg.AsyncCursor[Any], table: sql.Composable, kind: str, rows: list[tuple[Any, ...]]
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, COLUMNS[kind]))
    )
    async with cursor.copy(statement) as copy:
        copy.set_types(list(TYPES[kind]))
        # psycopg's own (C) row formatter, called synchronously: ``await copy.write_row`` per row
        # costs a coroutine each; this sends the buffer only when it is full (every 32 kB).
        formatter, send = copy.formatter, copy.write
        for row in rows:
            if buffer := formatter.write_row(row):
                await send(buffer)
                # Every 32 kB: let other tasks of the loop run (the measurement prefix answers
                # redirects on the same loop as the recorder writing).
                await asyncio.sleep(0)


@cache
def _dumpers() -> tuple[type[Dumper], type[Dumper]]:
    jsonb, uuid_type = psycopg.adapters.types["jsonb"], psycopg.adapters.types["uuid"]
    assert jsonb is not None and uuid_type is not None
    return (
        type("JsonbBytes", (_JsonbBytes,), {"oid": jsonb.oid}),
        type("UuidBinary", (_UuidBinary,), {"oid": uuid_type.oid}),
    )


def _cursor(driver: psycopg.AsyncConnection[Any]) -> psycopg.AsyncCursor[Any]:
    cursor = driver.cursor()
    jsonb_dumper, uuid_dumper = _dumpers()
    cursor.adapters.register_dumper(bytes, jsonb_dumper)
    cursor.adapters.register_dumper(uuid.UUID, uuid_dumper)
    return cursor


def group_by_day(rows: list[tuple[Any, ...]]) -> dict[date, list[tuple[Any, ...]]]:
    """The rows by the UTC day of their ``occurred_at`` (their last column): one partition each."""
    by_day: dict[date, list[tuple[Any, ...]]] = {}
    for row in rows:
        moment = row[-1]
        day = moment.date() if moment.tzinfo is UTC else utc_day(moment)
        if (same_day := by_day.get(day)) is None:
            by_day[day] = [row]
        else:
            same_day.append(row)
    return by_day


async def write(
    session: AsyncSession,
    kind: str,
    rows: list[tuple[Any, ...]],
    *,
    by_day: dict[date, list[tuple[Any, ...]]] | None = None,
) -> Written:
    """Store ``rows`` (tuples in ``COLUMNS[kind]`` order) in the caller's transaction; an event
    already stored (same tenant, id and occurred_at) is skipped, never stored twice. ``by_day`` is
    ``group_by_day(rows)`` when the caller has it already."""
    if not rows:
        return Written(0, None)
    driver = await _driver(session)
    if by_day is None:
        by_day = group_by_day(rows)
    async with _cursor(driver) as cursor:
        # Before the savepoint, whose rollback would undo the setting: the upsert's rows need it too.
        await cursor.execute(_TAKE_BATCH)
        kept: list[int] | None = None  # positions of the rows still to store, when not all of them
        columnar = await _columnar_days(cursor, kind, by_day)
        if columnar:
            by_day, kept = await _claim_digests(cursor, kind, by_day, columnar, rows)
        await cursor.execute("SAVEPOINT castmetrics_ingest")
        try:
            for day, day_rows in sorted(by_day.items()):
                if day_rows:
                    await _copy(cursor, sql.Identifier(SCHEMA, partition_name(kind, day)), kind, day_rows)
        except psycopg.Error as exc:
            if not _repeats(exc):
                raise
            await cursor.execute("ROLLBACK TO SAVEPOINT castmetrics_ingest")
            if kept is None:
                return await _upsert(cursor, kind, rows)
            written = await _upsert(cursor, kind, [rows[i] for i in kept])
            new = kept if written.new_positions is None else [kept[n] for n in written.new_positions]
            return Written(written.accepted, new)
        await cursor.execute("RELEASE SAVEPOINT castmetrics_ingest")
    return Written(len(rows), None) if kept is None else Written(len(kept), kept)


def _repeats(exc: psycopg.Error) -> bool:
    """Whether the COPY failed on an event already stored: a unique violation, which Citus reports from
    a worker's shard as an internal error with PostgreSQL's message; or a deadlock with another batch
    repeating some of the same events (on Citus the shards of one COPY are written in no fixed order), whose
    upsert then waits for the other batch instead."""
    if isinstance(exc, psycopg.errors.UniqueViolation | psycopg.errors.DeadlockDetected):
        return True
    return isinstance(exc, psycopg.errors.InternalError_) and any(
        message in str(exc) for message in ("duplicate key value violates unique constraint", "deadlock detected")
    )


# Columnar days (on Citus, ``db.citus``: days older than CASTMETRICS_COLUMNAR_AFTER_DAYS) keep no unique key;
# a re-sent event is recognised by its digest instead. Only listener and attribution events carry a key
# a client may send again, and only days before yesterday can be columnar.
DIGESTED = {"listener": "listener_events", "attribution": "attribution_events"}
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def digest(event_id: uuid.UUID, occurred_at: datetime) -> bytes:
    """An event key's digest, as ``db.citus.DIGEST_SQL`` computes it in the database: the first 6 bytes of
    SHA-256 over the id's bytes and occurred_at as PostgreSQL sends it (microseconds since 2000-01-01)."""
    micros = (occurred_at - _PG_EPOCH) // timedelta(microseconds=1)
    return hashlib.sha256(event_id.bytes + micros.to_bytes(8, "big", signed=True)).digest()[:DIGEST_BYTES]


def bucket(key: bytes) -> int:
    """The digest's bucket (the top 6 bits of its first byte), as ``db.citus.BUCKET_SQL``."""
    return key[0] >> 2


async def _columnar_days(
    cursor: psycopg.AsyncCursor[Any], kind: str, by_day: dict[date, list[tuple[Any, ...]]]
) -> set[date]:
    """The batch's days whose partitions are columnar. Their partitions are locked first (for the
    transaction): a conversion either committed before, and is seen, or waits until this batch is in."""
    if kind not in DIGESTED:
        return set()
    before = datetime.now(UTC).date() - timedelta(days=1)
    old = {partition_name(kind, day): day for day in by_day if day < before}
    if not old:
        return set()
    tables = sql.SQL(", ").join(sql.Identifier(SCHEMA, name) for name in sorted(old))
    await cursor.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(tables))
    await cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
        "WHERE c.relnamespace = CAST(%s AS regnamespace) AND c.relname = ANY(%s) AND a.amname = 'columnar'",
        (SCHEMA, list(old)),
    )
    return {old[name] for (name,) in await cursor.fetchall()}


_STORED_DIGESTS = (
    "SELECT digests FROM event_digests WHERE tenant_id = %s AND kind = %s AND day = %s AND bucket = ANY(%s)"
)
_ADD_DIGESTS = (
    "INSERT INTO event_digests AS o (tenant_id, kind, day, bucket, digests) VALUES {} "
    "ON CONFLICT (tenant_id, kind, day, bucket) DO UPDATE SET digests = o.digests || EXCLUDED.digests"
)


async def _claim_digests(
    cursor: psycopg.AsyncCursor[Any], kind: str, by_day: dict[date, list[tuple[Any, ...]]], columnar: set[date],
    rows: list[tuple[Any, ...]],
) -> tuple[dict[date, list[tuple[Any, ...]]], list[int]]:  # fmt: skip
    """Keep, of the columnar days' rows, those whose digests the day does not hold (each once), and add their
    digests to the day's (``db.citus``: ``event_digests``), in this transaction: ``by_day`` without the
    others, and the positions in ``rows`` of the rows that remain."""
    tenant_id = rows[0][0]
    dropped: set[int] = set()  # ids of the row tuples found stored
    kept_by_day = dict(by_day)
    # a cursor without the batch cursor's bytes-as-jsonb dumper
    async with cursor.connection.cursor() as plain:
        for day in sorted(columnar):
            table = DIGESTED[kind]
            # one writer of a tenant's day at a time: the next one reads what this one added
            await plain.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"castmetrics:digests:{tenant_id}:{table}:{day}",)
            )
            digests = [digest(row[1], row[-1]) for row in by_day[day]]
            await plain.execute(_STORED_DIGESTS, (tenant_id, table, day, sorted({bucket(d) for d in digests})))
            stored = {
                bytes(found[n : n + DIGEST_BYTES])
                for (found,) in await plain.fetchall()
                for n in range(0, len(found), DIGEST_BYTES)
            }
            kept_by_day[day] = []
            fresh: dict[int, list[bytes]] = {}
            for row, key in zip(by_day[day], digests, strict=True):
                if key in stored:
                    dropped.add(id(row))
                    continue
                stored.add(key)  # a second copy in the same batch is a duplicate too
                kept_by_day[day].append(row)
                fresh.setdefault(bucket(key), []).append(key)
            if fresh:
                groups = sql.SQL(", ").join(sql.SQL("(%s, %s, %s, %s, %s)") for _ in fresh)
                await plain.execute(
                    sql.SQL(_ADD_DIGESTS).format(groups),
                    [
                        value
                        for b, keys in sorted(fresh.items())
                        for value in (tenant_id, table, day, b, b"".join(sorted(keys)))
                    ],
                )
    return kept_by_day, [n for n, row in enumerate(rows) if id(row) not in dropped]


async def _upsert(cursor: psycopg.AsyncCursor[Any], kind: str, rows: list[tuple[Any, ...]]) -> Written:
    table = TABLES[kind]
    stage = sql.Identifier("pg_temp", f"stage_{table}")
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS[kind]))
    await cursor.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(
            stage, sql.Identifier("public", table)
        )
    )
    await cursor.execute(sql.SQL("TRUNCATE {}").format(stage))
    await _copy(cursor, stage, kind, rows)
    await cursor.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING RETURNING id, {}").format(
            sql.Identifier("public", table), columns, columns, stage, sql.Identifier(COLUMNS[kind][-1])
        )
    )
    inserted = {(row[0], row[1]) for row in await cursor.fetchall()}
    positions = [i for i, row in enumerate(rows) if (row[1], row[-1]) in inserted]
    return Written(len(positions), positions)
