"""The prefix's tenant directory: every tenant's slug and its episodes' audio hosts, held in memory.

The prefix answers from this without waiting on the database (``measurement.prefix.Edge``): a slug that is
no tenant's is a 404, and a browser navigation is redirected only to a host the tenant's episodes use. A
dedicated connection LISTENs on ``castmetrics_prefix``, where triggers (revision 0017) announce each tenant
created, renamed or deleted and each new audio URL, so a new tenant is known to every process moments after
its commit; it loads everything again on every (re)connection and every ``refresh_seconds`` in case a
notification was missed, and reconnects with backoff after a database blip, answering from what it last
knew meanwhile.

Start-up loads it before the server answers (``start``). When the database cannot be reached then, the last
snapshot this data directory saved for the same database (at most a day old) stands in; without one the
prefix refuses no slug and no host until the first load, as before the directory existed: a process
started during an outage must not turn it into a playback outage for every show.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import structlog

from castmetrics.db import urls
from castmetrics.measurement.urls import chain_hosts
from castmetrics.observability import PREFIX_DIRECTORY_LISTENING

log = structlog.get_logger(__name__)

CHANNEL = "castmetrics_prefix"
SNAPSHOT_FILE = "prefix-directory.json"
SNAPSHOT_MAX_AGE_SECONDS = 24 * 3600
START_WAIT_SECONDS = 5.0  # start-up waits this long at most for the first load
RECONNECT_SECONDS = (0.5, 10.0)  # first delay after a failure, doubling up to the second
# A silently dropped connection is noticed within about 10 s; a server that stops says so at once.
_CONNECTION: dict[str, Any] = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
               "keepalives_count": 3, "application_name": "castmetrics-prefix-directory"}  # fmt: skip
_NO_HOSTS: frozenset[str] = frozenset()


class TenantDirectory:
    def __init__(self, database_url: str, *, refresh_seconds: float = 60.0, snapshot: Path | None = None) -> None:
        self.url = urls.libpq_url(database_url)
        self.refresh_seconds = refresh_seconds
        self.snapshot = snapshot
        parsed = urls.parse(database_url)
        self._database = f"{parsed.host or ''}:{parsed.port or ''}/{parsed.database or ''}"
        # Slug -> tenant id; None until the first load (the prefix then refuses no slug).
        self.slugs: dict[str, uuid.UUID] | None = None
        self.hosts: dict[uuid.UUID, frozenset[str]] = {}
        self.listening = False
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        return self.slugs is not None

    def tenant_of(self, slug: str) -> uuid.UUID | None:
        return None if self.slugs is None else self.slugs.get(slug)

    def serves(self, tenant_id: uuid.UUID, url: str) -> bool:
        """Whether every host a request for ``url`` reaches (its own, and those known prefixes in it
        redirect to) is one the tenant's episodes' audio URLs name."""
        hosts = self.hosts.get(tenant_id, _NO_HOSTS)
        return all(host in hosts for host in chain_hosts(url))

    # --- life cycle --------------------------------------------------------------------------------

    async def start(self, wait_seconds: float = START_WAIT_SECONDS) -> None:
        """Start following the database, waiting for its first load at most ``wait_seconds``; when that
        fails, fall back on the snapshot (or on refusing nothing) until a load succeeds."""
        self._task = asyncio.create_task(self.run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait_seconds)
        if not self.loaded and not self._restore():
            log.warning("prefix.directory_not_loaded", detail="every slug is redirected until the database answers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Follow the database until cancelled, reconnecting with backoff."""
        delay, failing = RECONNECT_SECONDS[0], False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True, **_CONNECTION) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await self._load(conn)  # after LISTEN: a change committed meanwhile is also notified
                    self._listening(True)
                    if failing:
                        log.info("prefix.directory_reconnected", tenants=len(self.slugs or ()))
                    delay, failing = RECONNECT_SECONDS[0], False
                    self._first_attempt.set()
                    await self._follow(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage, or anything else: retried, never fatal to the server
                if not failing:
                    log.warning("prefix.directory_disconnected", error=(str(exc) or repr(exc)).splitlines()[0][:200])
                failing = True
            finally:
                self._listening(False)
            self._first_attempt.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_SECONDS[1])

    def _listening(self, value: bool) -> None:
        self.listening = value
        PREFIX_DIRECTORY_LISTENING.set(1 if value else 0)

    async def _follow(self, conn: psycopg.AsyncConnection[Any]) -> None:
        next_load = time.monotonic() + self.refresh_seconds
        while True:
            remaining = next_load - time.monotonic()
            if remaining <= 0:
                await self._load(conn)
                next_load = time.monotonic() + self.refresh_seconds
                continue
            payloads = [n.payload async for n in conn.notifies(timeout=remaining, stop_after=1)]
            if payloads:  # and whatever else has arrived already (a burst of sign-ups, a feed sync)
                payloads += [n.payload async for n in conn.notifies(timeout=0)]
                await self._apply(conn, payloads)

    # --- loading -----------------------------------------------------------------------------------

    async def _load(self, conn: psycopg.AsyncConnection[Any]) -> None:
        rows = await (await conn.execute("SELECT slug, id FROM measurement_prefix_tenants()")).fetchall()
        slugs = {str(slug): tenant for slug, tenant in rows}
        hosts = await self._hosts(conn, None)
        changed = slugs != self.slugs or hosts != self.hosts
        self.slugs, self.hosts = slugs, hosts
        self._save(changed)

    @staticmethod
    async def _hosts(
        conn: psycopg.AsyncConnection[Any], tenants: list[uuid.UUID] | None
    ) -> dict[uuid.UUID, frozenset[str]]:
        found: dict[uuid.UUID, set[str]] = defaultdict(set)
        cursor = await conn.execute("SELECT tenant_id, host FROM measurement_enclosure_hosts(%s::uuid[])", [tenants])
        for tenant, host in await cursor.fetchall():
            found[tenant].add(host)
        return {tenant: frozenset(names) for tenant, names in found.items()}

    async def _apply(self, conn: psycopg.AsyncConnection[Any], payloads: Iterable[str]) -> None:
        slugs = dict(self.slugs or {})
        slug_of = {tenant: slug for slug, tenant in slugs.items()}
        hosts_of: set[uuid.UUID] = set()
        gone: set[uuid.UUID] = set()
        renamed = False
        for payload in payloads:
            try:
                message = orjson.loads(payload)
                if message.get("reload"):
                    await self._load(conn)
                    return
                if "hosts" in message:
                    hosts_of.add(uuid.UUID(message["hosts"]))
                    continue
                tenant = uuid.UUID(message["tenant"])
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                log.warning("prefix.directory_bad_notification", payload=payload[:200])
                continue
            renamed = True
            if (old := slug_of.pop(tenant, None)) is not None:
                slugs.pop(old, None)
            if slug := message.get("slug"):
                slugs[str(slug)], slug_of[tenant] = tenant, str(slug)
            else:
                gone.add(tenant)
        # Copies replaced whole: the prefix never sees a half-applied change.
        self.slugs = slugs
        if hosts_of or gone:
            hosts = {tenant: names for tenant, names in self.hosts.items() if tenant not in gone | hosts_of}
            if hosts_of:
                hosts.update(await self._hosts(conn, sorted(hosts_of)))
            self.hosts = hosts
        if renamed:  # hosts alone wait for the next full load: a feed sync need not rewrite the snapshot
            self._save(changed=True)

    # --- snapshot ----------------------------------------------------------------------------------

    def _save(self, changed: bool) -> None:
        """Keep what was loaded for a start during an outage; an unchanged one is only marked fresh."""
        if self.snapshot is None or self.slugs is None:
            return
        try:
            if not changed and self.snapshot.exists():
                os.utime(self.snapshot)
                return
            document = {
                "database": self._database,
                "slugs": {slug: str(tenant) for slug, tenant in self.slugs.items()},
                "hosts": {str(tenant): sorted(names) for tenant, names in self.hosts.items()},
            }
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            staging = self.snapshot.with_name(f".{self.snapshot.name}.{os.getpid()}.tmp")
            with os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
                handle.write(orjson.dumps(document))
            staging.replace(self.snapshot)
        except OSError as exc:  # a read-only data directory costs only the fallback
            log.warning("prefix.directory_snapshot_not_saved", error=str(exc))

    def _restore(self) -> bool:
        if self.snapshot is None:
            return False
        try:
            if time.time() - self.snapshot.stat().st_mtime > SNAPSHOT_MAX_AGE_SECONDS:
                return False
            document = orjson.loads(self.snapshot.read_bytes())
            if document.get("database") != self._database:
                return False
            slugs = {str(slug): uuid.UUID(tenant) for slug, tenant in document["slugs"].items()}
            hosts = {uuid.UUID(tenant): frozenset(names) for tenant, names in document["hosts"].items()}
        except (OSError, orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return False
        if self.slugs is None:  # a load may have completed meanwhile
            self.slugs, self.hosts = slugs, hosts
            log.warning("prefix.directory_from_snapshot", tenants=len(slugs), file=str(self.snapshot))
        return True
