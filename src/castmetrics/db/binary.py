"""Bytea-heavy statements (bitmaps, sketches) in PostgreSQL's binary format, both ways."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

# A SQLAlchemy ``:name`` parameter (not the ``::type`` of a cast).
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


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
            return list(await cursor.fetchall()) if cursor.description is not None else []
    except psycopg.Error as exc:  # as SQLAlchemy would raise it, for the same error handling upstream
        raise DBAPIError.instance(query, params, exc, psycopg.Error) from exc


async def execute_binary(session: AsyncSession, query: str, params: dict[str, Any]) -> None:
    """Run ``query`` (SQLAlchemy ``:name`` parameters, each array cast to its type in the statement) with
    its parameters sent in binary: a rebuild's month of bitmaps is some 200,000 byte strings, UUIDs and
    dates, which as text arrays cost four times as much to send and parse."""
    await fetch_binary(session, _NAMED.sub(r"%(\1)b", query), params)
