"""Keyset pagination over (timestamp, id), newest first, with opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from castmetrics.errors import Invalid

T = TypeVar("T")


def encode_cursor(moment: datetime, ident: uuid.UUID | str) -> str:
    raw = json.dumps([moment.isoformat(), str(ident)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(moment), uuid.UUID(ident)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise Invalid("the cursor is not one this API gave out", parameter="cursor") from exc


async def keyset_page(
    session: AsyncSession,
    statement: Select[Any],
    *,
    moment: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Any], str | None]:
    """One page of ``statement``'s entities, newest first; the next cursor or None at the end."""
    if cursor:
        after_moment, after_id = decode_cursor(cursor)
        statement = statement.where(or_(moment < after_moment, and_(moment == after_moment, ident < after_id)))
    rows = (await session.scalars(statement.order_by(moment.desc(), ident.desc()).limit(limit + 1))).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(getattr(last, moment.key), getattr(last, ident.key))
