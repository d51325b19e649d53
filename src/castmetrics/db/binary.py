"""Reading bytea-heavy rows (bitmaps, sketches) in PostgreSQL's binary format."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession


async def fetch_binary(session: AsyncSession, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows of ``query`` (psycopg ``%(name)s`` parameters) read in PostgreSQL's binary format: bitmaps
    come as bytes, not as hex text twice their size."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    try:
        async with driver.cursor(binary=True) as cursor:
            await cursor.execute(query, params)
            return list(await cursor.fetchall())
    except psycopg.Error as exc:  # as SQLAlchemy would raise it, for the same error handling upstream
        raise DBAPIError.instance(query, params, exc, psycopg.Error) from exc
