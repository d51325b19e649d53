"""Resolved principals, kept per process for a few seconds, so an authenticated request reaches its query
without reading the tenant, the user, their roles and permissions (and, for an API key, the key) again.

A credential is resolved once and its principal (minus the request's transaction) kept for
``CASTMETRICS_PRINCIPAL_CACHE_SECONDS`` (default 5, at most 5, 0 turns the cache off), keyed by the access
token's tenant, user and login session, or by the SHA-256 digest of an API key (never the key itself). What
every request still checks: the access token's signature and expiry, the tenant's status (from the cached
row), the permission the route needs.

The bound. Whatever changes a principal (a key revoked, a user deactivated, a role or its permissions
changed, a membership, the tenant suspended or cancelled, a session ended) takes effect

- in the process that made the change at once: every committed write of a tenant through the API (but
  event ingestion) forgets that tenant's principals, the public routes that end sessions (logout, a
  password reset) forget every principal, and a refused refresh token (perhaps a replay that ended its
  sessions) its tenant's;
- in every other process, and for a change made directly in the database, when the entry expires: within
  the cache's seconds (5 by default), never later.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cachetools import TTLCache

from castmetrics.auth.principal import ApiKeyContext, TenantContext, UserContext

# The longest a revoked credential may still be honoured by another process.
MAX_SECONDS = 5.0


@dataclass(frozen=True)
class Resolved:
    """A principal as its credential resolved it, without the request's transaction."""

    tenant: TenantContext
    user: UserContext
    roles: tuple[str, ...]
    permissions: frozenset[str]
    api_key: ApiKeyContext | None = None


class PrincipalCache:
    def __init__(
        self, seconds: float, max_entries: int = 10_000, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        if seconds > MAX_SECONDS:
            raise ValueError(f"principals may be cached for at most {MAX_SECONDS:g} seconds")
        self.enabled = seconds > 0 and max_entries > 0
        self._entries: TTLCache[Hashable, Resolved] = TTLCache(
            maxsize=max(max_entries, 1), ttl=max(seconds, 0.001), timer=timer
        )

    def get(self, key: Hashable) -> Resolved | None:
        return self._entries.get(key) if self.enabled else None

    def put(self, key: Hashable, resolved: Resolved) -> None:
        if self.enabled:
            self._entries[key] = resolved

    def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        """Drop every principal of ``tenant_id`` (after a change that may concern them)."""
        for key, resolved in list(self._entries.items()):
            if resolved.tenant.id == tenant_id:
                self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
