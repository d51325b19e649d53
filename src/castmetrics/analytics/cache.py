"""A short-lived in-process cache of analytics answers, keyed by tenant and by the tenant's data version.

The key holds the tenant id (taken from the authenticated principal, after the scope was found
through the tenant's own RLS-bound session), the question, and the tenant's *data version*: the
newest row of its rollup invalidation log, or, when the log is empty, the log sequence's position.
Every batch of events or download requests that commits adds a log row, so an answer cached before
the batch is never served after it — in this process or any other. What the version does not see
(an episode moved to another podcast) is bounded by the time to live.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from cachetools import TTLCache
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
_VERSION = text(
    "SELECT coalesce((SELECT max(id) FROM rollup_invalidations WHERE tenant_id = :t), "
    "-coalesce(pg_sequence_last_value('rollup_invalidations_id_seq'), 0))"
)


class AnswerCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 4096) -> None:
        self.enabled = ttl_seconds > 0 and max_entries > 0
        self._entries: TTLCache[Hashable, Any] = TTLCache(maxsize=max(max_entries, 1), ttl=max(ttl_seconds, 0.001))
        self.hits = 0
        self.misses = 0

    async def get_or_compute(
        self, session: AsyncSession, tenant_id: uuid.UUID, question: Hashable, compute: Callable[[], Awaitable[T]]
    ) -> T:
        if not self.enabled:
            return await compute()
        version = (await session.execute(_VERSION, {"t": tenant_id})).scalar_one()
        key = (tenant_id, version, question)
        try:
            found: T = self._entries[key]
        except KeyError:
            pass
        else:
            self.hits += 1
            return found
        self.misses += 1
        answer = await compute()
        self._entries[key] = answer
        return answer

    def clear(self) -> None:
        self._entries.clear()
