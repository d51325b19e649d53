"""Writing a validated batch: COPY straight into the day partitions, or an upsert when it repeats.

PostgreSQL refuses ``COPY FROM`` into a table with row-level security, so the fast path appends to
the day partitions themselves (the runtime role may only INSERT there, and a statement trigger on
each partition refuses rows of another tenant). A batch that repeats events already stored meets a
unique violation; the savepoint is rolled back and the batch goes through a temporary staging table
and ``INSERT … ON CONFLICT DO NOTHING`` on the parent, where row-level security checks every row.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, date
from functools import cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy.ext.asyncio import AsyncSession

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
        await cursor.execute("SAVEPOINT castmetrics_ingest")
        try:
            for day, day_rows in sorted(by_day.items()):
                await _copy(cursor, sql.Identifier(SCHEMA, partition_name(kind, day)), kind, day_rows)
        except psycopg.errors.UniqueViolation:
            await cursor.execute("ROLLBACK TO SAVEPOINT castmetrics_ingest")
            return await _upsert(cursor, kind, rows)
        await cursor.execute("RELEASE SAVEPOINT castmetrics_ingest")
    return Written(len(rows), None)


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
