"""Usage metering off the request path: logins and API calls per user and UTC day (``user_metrics``), and
API keys' last use, counted in memory and written in batches.

A request only adds to a counter in this process; ``flush`` writes what was counted since the last flush,
one transaction per tenant (its rows as one multi-row upsert), every ``CASTMETRICS_USAGE_FLUSH_SECONDS``
(default 5) and once more when the process stops cleanly, so the stored counts equal the requests made.
A user or tenant deleted meanwhile loses its own counts and nothing else: only users that still exist are
written. A flush that fails (the database away) keeps its counts for the next one. Reads of the counts
add what this process has not flushed yet (``pending``), so they are current here at once and
everywhere within the flush interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import structlog
from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.db.values import values

log = structlog.get_logger(__name__)

Key = tuple[uuid.UUID, uuid.UUID, date]  # (tenant, user, UTC day)
ROWS_PER_STATEMENT = 1000  # five parameters a row, far below PostgreSQL's 65,535


@dataclass
class Counts:
    logins: int = 0
    api_calls: int = 0


def _today() -> date:
    return datetime.now(UTC).date()


class UsageMeter:
    def __init__(self, *, today: Callable[[], date] = _today, now: Callable[[], datetime] | None = None) -> None:
        self._today = today
        self._now = now or (lambda: datetime.now(UTC))
        self._counts: defaultdict[Key, Counts] = defaultdict(Counts)
        self._keys: dict[tuple[uuid.UUID, uuid.UUID], datetime] = {}  # (tenant, key) -> last use
        self._flushing = asyncio.Lock()

    def count(self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, logins: int = 0, api_calls: int = 0) -> None:
        counts = self._counts[(tenant_id, user_id, self._today())]
        counts.logins += logins
        counts.api_calls += api_calls

    def used_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        self._keys[(tenant_id, key_id)] = self._now()

    def last_used(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> datetime | None:
        """The key's last use this process has not written yet."""
        return self._keys.get((tenant_id, key_id))

    def pending(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> dict[date, Counts]:
        """What this process counted for the user and has not written yet, by day."""
        return {day: c for (t, u, day), c in list(self._counts.items()) if t == tenant_id and u == user_id}

    async def flush(self, db: Database) -> int:
        """Write what was counted; answers the number of user-day rows written."""
        async with self._flushing:
            counts, self._counts = self._counts, defaultdict(Counts)
            keys, self._keys = self._keys, {}
            by_tenant: defaultdict[uuid.UUID, list[tuple[Key, Counts]]] = defaultdict(list)
            for key, c in counts.items():
                by_tenant[key[0]].append((key, c))
            used: defaultdict[uuid.UUID, list[tuple[uuid.UUID, datetime]]] = defaultdict(list)
            for (tenant_id, key_id), at in keys.items():
                used[tenant_id].append((key_id, at))
            written = 0
            for tenant_id in sorted(set(by_tenant) | set(used)):
                try:
                    written += await _write(db, tenant_id, by_tenant.get(tenant_id, []), used.get(tenant_id, []))
                except Exception:
                    log.warning("usage.flush_failed", tenant_id=str(tenant_id), exc_info=True)
                    for key, c in by_tenant.get(tenant_id, []):
                        kept = self._counts[key]
                        kept.logins += c.logins
                        kept.api_calls += c.api_calls
                    for key_id, at in used.get(tenant_id, []):
                        self._keys[(tenant_id, key_id)] = max(at, self._keys.get((tenant_id, key_id), at))
            return written

    async def run(self, db: Database, every: float) -> None:
        """Flush every ``every`` seconds until cancelled; then flush once more."""
        try:
            while True:
                await asyncio.sleep(every)
                await self.flush(db)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush(db))


async def _write(
    db: Database, tenant_id: uuid.UUID, rows: list[tuple[Key, Counts]], keys: list[tuple[uuid.UUID, datetime]]
) -> int:
    async with db.tenant_transaction(tenant_id) as session:
        users = {key[1] for key, _ in rows}
        existing = set()
        if users:
            found = await session.execute(
                text("SELECT id FROM users WHERE tenant_id = :t AND id = ANY(:ids)"),
                {"t": tenant_id, "ids": list(users)},
            )
            existing = {row.id for row in found}
        kept = sorted(
            ((t, u, day, c.logins, c.api_calls) for (t, u, day), c in rows if u in existing),
            key=lambda row: (row[1], row[2]),
        )
        for start in range(0, len(kept), ROWS_PER_STATEMENT):
            groups, params = values(
                kept[start : start + ROWS_PER_STATEMENT], ("uuid", "uuid", "date", "integer", "integer")
            )
            await session.execute(
                text(
                    f"INSERT INTO user_metrics AS m (tenant_id, user_id, day, logins, api_calls) VALUES {groups} "
                    "ON CONFLICT (tenant_id, user_id, day) "
                    "DO UPDATE SET logins = m.logins + EXCLUDED.logins, api_calls = m.api_calls + EXCLUDED.api_calls"
                ),
                params,
            )
        for key_id, at in sorted(keys):
            await session.execute(
                text(
                    "UPDATE api_keys SET last_used_at = :at WHERE tenant_id = :t AND id = :k "
                    "AND (last_used_at IS NULL OR last_used_at < :at)"
                ),
                {"t": tenant_id, "k": key_id, "at": at},
            )
        return len(kept)
