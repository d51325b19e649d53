"""Writing a validated batch: COPY straight into the day partitions, or an upsert when it repeats.

PostgreSQL refuses ``COPY FROM`` into a table with row-level security, so the fast path appends to
the day partitions themselves (the runtime role may only INSERT there, and a statement trigger on
each partition refuses rows of another tenant). A batch that repeats events already stored meets a
unique violation; the savepoint is rolled back and the batch goes through a temporary staging table
and ``INSERT … ON CONFLICT DO NOTHING`` on the parent, where row-level security checks every row.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.events.partitions import SCHEMA, partition_name

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
}
TYPES = {
    "listener": ("uuid", "uuid", "uuid", "text", "text", "jsonb", "timestamptz"),
    "attribution": ("uuid", "uuid", "uuid", "uuid", "text", "text", "jsonb", "timestamptz"),
}


class _JsonbBytes(Dumper):
    """Writes already-encoded JSON (bytes from orjson) as binary jsonb: a version byte, then the text."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + bytes(obj)


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
        for row in rows:
            await copy.write_row(row)


def _cursor(driver: psycopg.AsyncConnection[Any]) -> psycopg.AsyncCursor[Any]:
    cursor = driver.cursor()
    jsonb = psycopg.adapters.types["jsonb"]
    assert jsonb is not None
    dumper = type("JsonbBytes", (_JsonbBytes,), {"oid": jsonb.oid})
    cursor.adapters.register_dumper(bytes, dumper)
    return cursor


async def write(session: AsyncSession, kind: str, rows: list[tuple[Any, ...]]) -> Written:
    """Store ``rows`` (tuples in ``COLUMNS[kind]`` order) in the caller's transaction; an event
    already stored (same tenant, id and occurred_at) is skipped, never stored twice."""
    if not rows:
        return Written(0, None)
    driver = await _driver(session)
    by_day: dict[date, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        by_day[row[-1].astimezone(UTC).date()].append(row)
    async with _cursor(driver) as cursor:
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
    table = f"{kind}_events"
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
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING RETURNING id, occurred_at").format(
            sql.Identifier("public", table), columns, columns, stage
        )
    )
    inserted = {(row[0], row[1]) for row in await cursor.fetchall()}
    positions = [i for i, row in enumerate(rows) if (row[1], row[-1]) in inserted]
    return Written(len(positions), positions)
