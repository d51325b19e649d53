"""Dropping event partitions the way an operator with a shorter retention would."""

from __future__ import annotations

from datetime import UTC, datetime

from castmetrics.db.migrate import set_event_retention
from castmetrics.db.session import Database
from castmetrics.events import partitions


async def drop_partitions_keeping(db: Database, owner_url: str, days: int, *, restore: int = 730) -> list[str]:
    """Drop event partitions older than ``days`` days, as an operator with that retention would (the
    database refuses to drop more than the recorded retention); the recorded value is restored."""
    set_event_retention(owner_url, days)
    try:
        return await partitions.drop_expired(db, datetime.now(UTC).date(), retention_days=days)
    finally:
        set_event_retention(owner_url, restore)
