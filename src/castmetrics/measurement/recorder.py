"""The recorder: drains the prefix buffer within a second and stores the requests in batches.

Per flush it enriches the raw requests (hash, country, user agent; the address is dropped), resolves
tenant slugs and episode audio URLs, and writes each tenant's requests in one transaction through the
events COPY path, feeding the listener sketches and noting the days for the rollup refresh. When the
database cannot be reached the enriched records go to the local spool instead; while anything is
spooled, new records queue behind it, so the spool is replayed in order, exactly once.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.config import Settings
from castmetrics.db.errors import is_connection_error
from castmetrics.db.session import Database
from castmetrics.events import partitions, writer
from castmetrics.events import service as events
from castmetrics.measurement import sketches, urls, useragents
from castmetrics.measurement.enrich import (
    AT,
    ID,
    IS_BOT,
    IS_PROBE,
    METHOD,
    SKETCH_KEY,
    SLUG,
    URL,
    AddressRanges,
    Enriched,
    Enricher,
    country_of,
    from_json,
    to_json,
)
from castmetrics.measurement.prefix import Buffer, RawRequest
from castmetrics.measurement.spool import Spool
from castmetrics.measurement.tenant_directory import TenantDirectory
from castmetrics.observability import PREFIX_RECORDED, PREFIX_REDIRECTS, PREFIX_SPOOLED, PREFIX_UNKNOWN_TENANT

log = structlog.get_logger(__name__)

FLUSH_SECONDS = 0.1
FULL_COLLECTION_EVERY = 1_000  # middle-generation collections between full ones (CPython's default: 10)
ENRICH_SLICE = 500
SLUG_TTL = 30.0
EPISODE_TTL = 60.0
EPISODE_RELOAD_AFTER = 10.0  # a URL that matches nothing reloads a map older than this (late matching
# in counting.add and counting.recompute catches requests for episodes created in between)
MAX_KNOWN_SLUGS = 10_000
USERAGENTS_CHECK_SECONDS = 60.0  # how often a flush looks for newer installed user-agent lists


def measurement_key(settings: Settings) -> bytes:
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"castmetrics-measurement", hashlib.sha256).digest()


class EpisodeMap:
    """One tenant's episodes by normalised audio URL, with size and duration for the counting."""

    def __init__(self) -> None:
        self.by_key: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
        self.loaded_at = 0.0

    async def load(self, session: AsyncSession) -> None:
        rows = await session.execute(text("SELECT id, podcast_id, audio_url FROM episodes WHERE audio_url IS NOT NULL"))
        self.by_key = {urls.match_key(row.audio_url): (row.id, row.podcast_id) for row in rows}
        self.loaded_at = time.monotonic()


class Recorder:
    def __init__(
        self, db: Database, settings: Settings, buffer: Buffer, directory: TenantDirectory | None = None
    ) -> None:
        self.db = db
        self.buffer = buffer
        self.directory = directory
        self.retention_days = settings.event_retention_days
        self.enricher = Enricher(measurement_key(settings), AddressRanges.from_file(settings.datacenter_ranges_file))
        self.spool = Spool(
            settings.data_dir / "spool", settings.prefix_spool_max_bytes, lambda item: self.is_unknown_slug(item[SLUG])
        )
        self._useragents = settings.data_dir / useragents.INSTALLED_FOLDER
        self._useragents_checked = float("-inf")
        self._tenants: dict[str, tuple[uuid.UUID | None, float]] = {}
        self._episodes: dict[uuid.UUID, EpisodeMap] = {}
        self._lock = asyncio.Lock()

    def warm_up(self) -> None:
        """Load the GeoIP data and the user-agent lists now, then move everything allocated so far out
        of the garbage collector's view: those big, long-lived tables would otherwise be traversed by
        every full collection, stalling redirects for hundreds of milliseconds."""
        country_of("192.0.2.1")
        useragents.default()
        gc.collect()
        gc.freeze()
        # Full collections walk every tracked object (caches of user agents, addresses and URLs grow to
        # hundreds of thousands): make them rare. Young generations still run as usual, and almost
        # everything the hot path allocates is acyclic and freed by reference counting.
        young, middle, _old = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)

    async def run(self) -> None:
        """Flush every quarter second until cancelled; then a last flush. A flush in progress is
        shielded from cancellation (the last flush waits for it), so a shutdown loses nothing taken
        from the buffer; an unexpected error is logged and the next flush goes on."""
        self.warm_up()
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                try:
                    await asyncio.shield(self.flush())
                except Exception:
                    log.exception("prefix.flush_failed")
        finally:
            try:
                await asyncio.shield(self.flush())
            except Exception:
                log.exception("prefix.flush_failed")

    async def _enrich(self, raws: list[RawRequest]) -> list[Enriched]:
        """Enrich in slices, letting the event loop answer redirects in between (no long stalls)."""
        records: list[Enriched] = []
        enrich = self.enricher.enrich
        for start in range(0, len(raws), ENRICH_SLICE):
            records.extend([enrich(raw) for raw in raws[start : start + ENRICH_SLICE]])
            await asyncio.sleep(0)
        return records

    async def _write_json(self, items: list[list[Any]]) -> None:
        await self.write([from_json(item) for item in items])

    def _spool(self, records: list[Enriched]) -> None:
        self.spool.append([to_json(record) for record in records])
        PREFIX_SPOOLED.inc(len(records))

    async def flush(self) -> int:
        """Store (or spool) what the buffer holds; answers the records stored in the database."""
        async with self._lock:
            if time.monotonic() - self._useragents_checked >= USERAGENTS_CHECK_SECONDS:
                self._useragents_checked = time.monotonic()
                try:  # lists installed since (``castmetrics useragents install``), compiled off the event loop
                    await asyncio.to_thread(useragents.maybe_reload, self._useragents)
                except Exception:
                    log.exception("prefix.useragents_reload_failed")
            records = await self._enrich(self.buffer.take())
            PREFIX_REDIRECTS.inc(len(records))
            stored = 0
            if self.spool.has_pending():
                self._spool(records)
                records = []
                try:
                    stored += await self.spool.replay(self._write_json, retryable=is_connection_error)
                except Exception as exc:
                    if not is_connection_error(exc):
                        log.exception("prefix.replay_failed")
                    return stored
            try:
                await self.write(records)
                stored += len(records)
            except Exception as exc:
                if is_connection_error(exc):
                    self._spool(records)
                    log.warning("prefix.spooled", records=len(records))
                else:
                    # Not an outage: retrying would fail the same way. Kept aside for an operator.
                    log.exception("prefix.write_failed", records=len(records))
                    self.spool.dead_letter([to_json(record) for record in records])
            return stored

    def is_unknown_slug(self, slug: str) -> bool:
        """Known not to be a tenant's (whose requests are never stored): what a full spool drops first."""
        if self.directory is not None and self.directory.loaded and self.directory.tenant_of(slug) is None:
            return True
        cached = self._tenants.get(slug)
        return cached is not None and cached[0] is None

    async def _tenant_ids(self, slugs: set[str]) -> dict[str, uuid.UUID]:
        now = time.monotonic()
        wanted = [slug for slug in slugs if slug not in self._tenants or now - self._tenants[slug][1] > SLUG_TTL]
        if wanted:
            async with self.db.transaction() as session:
                rows = await session.execute(
                    text("SELECT slug, id FROM measurement_tenants(:slugs)"), {"slugs": wanted}
                )
                found = {row.slug: row.id for row in rows}
            if len(self._tenants) > MAX_KNOWN_SLUGS:  # unknown slugs are anyone's to invent
                self._tenants.clear()
            for slug in wanted:
                self._tenants[slug] = (found.get(slug), now)
        return {slug: tenant for slug in slugs if (tenant := self._tenants[slug][0]) is not None}

    async def _episodes_of(self, session: AsyncSession, tenant_id: uuid.UUID, keys: set[str]) -> EpisodeMap:
        episodes = self._episodes.setdefault(tenant_id, EpisodeMap())
        age = time.monotonic() - episodes.loaded_at
        if age > EPISODE_TTL or (age > EPISODE_RELOAD_AFTER and not keys <= episodes.by_key.keys()):
            await episodes.load(session)
        return episodes

    async def write(self, records: list[Enriched]) -> None:
        """Store enriched records, each tenant's in one transaction; raises when the database fails."""
        if not records:
            return
        by_slug: dict[str, list[Enriched]] = defaultdict(list)
        for record in records:
            by_slug[record[SLUG]].append(record)
        tenants = await self._tenant_ids(set(by_slug))
        unknown = sum(len(items) for slug, items in by_slug.items() if slug not in tenants)
        if unknown:
            PREFIX_UNKNOWN_TENANT.inc(unknown)
        for slug, tenant_id in tenants.items():
            await self._write_tenant(tenant_id, by_slug[slug])
            PREFIX_RECORDED.inc(len(by_slug[slug]))

    async def _write_tenant(self, tenant_id: uuid.UUID, records: list[Enriched]) -> None:
        accepted = partitions.AcceptedRange.at(partitions.utc_now(), self.retention_days)
        earliest, latest = accepted.earliest.timestamp(), accepted.latest.timestamp()
        keys = {urls.match_key(record[URL]) for record in records}
        days: set[date] = set()
        rows: list[tuple[Any, ...]] = []
        feed: dict[tuple[date, uuid.UUID], list[str]] = defaultdict(list)
        async with self.db.tenant_transaction(tenant_id) as session:
            by_key = (await self._episodes_of(session, tenant_id, keys)).by_key
            for count, record in enumerate(records, 1):
                if count % 1000 == 0:
                    await asyncio.sleep(0)  # redirects are answered on this loop too
                at = record[AT]
                if not earliest <= at < latest:
                    continue  # a spool replayed after the retention: nothing to store it in
                moment = datetime.fromtimestamp(at, UTC)
                match = by_key.get(urls.match_key(record[URL]))
                day = moment.date()
                days.add(day)
                rows.append((tenant_id, record[ID], match[0] if match else None, record[URL], *record[4:5],
                             *record[6:], moment))  # fmt: skip
                if match and not record[IS_BOT] and record[METHOD] == "GET" and not record[IS_PROBE]:
                    key = record[SKETCH_KEY]
                    for scope in (match[0], match[1], sketches.ALL):
                        feed[(day, scope)].append(key)
            await partitions.ensure_days(self.db, days)
            await writer.write(session, "download", rows)
            await events.note_days(session, tenant_id, days, kind="download")
            await sketches.add(session, tenant_id, feed)
