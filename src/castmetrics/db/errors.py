"""Telling an unreachable database apart from other failures (503 and retry, not 500 or give up)."""

from __future__ import annotations

import psycopg
import psycopg_pool
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) means the database could not be reached or went away."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.OperationalError | ConnectionError | psycopg_pool.PoolTimeout | SATimeoutError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False
