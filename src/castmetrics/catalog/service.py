"""Podcasts and episodes: CRUD within quotas, and syncing a podcast from its RSS feed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit import service as audit
from castmetrics.auth.principal import Actor, TenantRef
from castmetrics.catalog import fetch, rss
from castmetrics.catalog.models import Episode, Podcast, PodcastFeed, PodcastSync
from castmetrics.catalog.schemas import EpisodeIn, EpisodeUpdate, PodcastIn, PodcastUpdate, SyncReport
from castmetrics.changes import record_change
from castmetrics.config import Settings
from castmetrics.db.repository import Repository
from castmetrics.db.search import contains
from castmetrics.db.session import Database
from castmetrics.errors import Invalid, NotFound
from castmetrics.measurement import service as measurement
from castmetrics.outbox.models import OutboxEvent
from castmetrics.quotas import service as quotas
from castmetrics.tenancy.models import Tenant

log = structlog.get_logger(__name__)

PODCAST_FIELDS = ("name", "rss_feed_url", "website_url", "description", "sync_interval_minutes")
EPISODE_FIELDS = ("title", "published_at", "duration_seconds", "audio_url", "episode_number", "description")
# What a feed sync compares and writes for each episode.
SYNCED_FIELDS = (
    "title", "description", "episode_number", "season", "published_at", "duration_seconds", "audio_url",
    "audio_type", "audio_length_bytes", "explicit", "image_url",
)  # fmt: skip

_podcasts = Repository(Podcast, moment=Podcast.created_at)
_episodes = Repository(Episode, moment=Episode.created_at)
_syncs = Repository(PodcastSync, moment=PodcastSync.started_at)


def prefix_url(settings: Settings, tenant_slug: str, audio_url: str | None) -> str | None:
    """The audio URL through the measurement prefix: ``/p/<slug>/<url without scheme>``."""
    if not audio_url:
        return None
    rest = audio_url.split("://", 1)[1] if "://" in audio_url else audio_url
    return f"{settings.public_url.rstrip('/')}/p/{tenant_slug}/{rest}"


def tracked_feed_url(settings: Settings, podcast_id: uuid.UUID) -> str:
    return f"{settings.public_url.rstrip('/')}/feeds/{podcast_id}.xml"


# --- podcasts ------------------------------------------------------------------------------------


async def create_podcast(session: AsyncSession, tenant: TenantRef, actor: Actor, data: PodcastIn) -> Podcast:
    """A podcast of the tenant, within its podcasts quota (402 when full)."""
    await quotas.ensure_room(session, tenant, "podcasts")
    podcast = Podcast(tenant_id=tenant.id, id=uuid.uuid4(), **data.model_dump())
    session.add(podcast)
    await session.flush()
    await session.refresh(podcast)
    await record_change(
        session, tenant_id=tenant.id, actor=actor, action="create", entity_type="podcast", entity_id=podcast.id,
        after={f: getattr(podcast, f) for f in PODCAST_FIELDS},
        event_type="podcast.created", payload={"podcast_id": str(podcast.id)},
    )  # fmt: skip
    return podcast


async def get_podcast(session: AsyncSession, podcast_id: uuid.UUID) -> Podcast:
    return await _podcasts.get(session, podcast_id, missing="no such podcast")


async def list_podcasts(
    session: AsyncSession, *, limit: int, cursor: str | None, q: str | None = None
) -> tuple[Sequence[Podcast], str | None]:
    statement = select(Podcast)
    if q:
        statement = statement.where(contains(Podcast.name, q))
    return await _podcasts.page(session, statement, limit=limit, cursor=cursor)


async def update_podcast(session: AsyncSession, actor: Actor, podcast: Podcast, data: PodcastUpdate) -> Podcast:
    before = {f: getattr(podcast, f) for f in PODCAST_FIELDS}
    changes = data.model_dump(exclude_unset=True)
    if changes.get("name", "") is None or changes.get("sync_interval_minutes", 0) is None:
        raise Invalid("name and sync_interval_minutes cannot be null")
    for field, value in changes.items():
        setattr(podcast, field, value)
    if "rss_feed_url" in changes:  # a new feed starts without conditional-GET state
        podcast.feed_etag = podcast.feed_last_modified = None
        podcast.next_sync_at = None
    await session.flush()
    await session.refresh(podcast)
    await audit.record(
        session, tenant_id=podcast.tenant_id, actor=actor, action="update", entity_type="podcast",
        entity_id=podcast.id, before=before, after={f: getattr(podcast, f) for f in PODCAST_FIELDS},
    )  # fmt: skip
    return podcast


async def delete_podcast(session: AsyncSession, actor: Actor, podcast: Podcast) -> None:
    await session.delete(podcast)
    await session.flush()
    await audit.record(
        session, tenant_id=podcast.tenant_id, actor=actor, action="delete", entity_type="podcast",
        entity_id=podcast.id, before={"name": podcast.name},
    )  # fmt: skip


# --- episodes ------------------------------------------------------------------------------------


async def create_episode(session: AsyncSession, actor: Actor, podcast: Podcast, data: EpisodeIn) -> Episode:
    values = data.model_dump()
    episode = Episode(
        tenant_id=podcast.tenant_id, id=uuid.uuid4(), podcast_id=podcast.id, guid=f"urn:uuid:{uuid.uuid4()}", **values
    )
    session.add(episode)
    await session.flush()
    await session.refresh(episode)
    await record_change(
        session, tenant_id=podcast.tenant_id, actor=actor, action="create", entity_type="episode",
        entity_id=episode.id, after=audit.snapshot(episode, EPISODE_FIELDS), event_type="episode.published",
        payload={"episode_id": str(episode.id), "podcast_id": str(episode.podcast_id), "title": episode.title},
    )  # fmt: skip
    if episode.audio_url:
        await measurement.episodes_changed(session, episode.tenant_id)
    return episode


async def get_episode(session: AsyncSession, episode_id: uuid.UUID) -> Episode:
    return await _episodes.get(session, episode_id, missing="no such episode")


async def list_episodes(
    session: AsyncSession,
    podcast_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    q: str | None = None,
    published_from: datetime | None = None,
    published_to: datetime | None = None,
) -> tuple[Sequence[Episode], str | None]:
    """A podcast's episodes, newest first, filtered by title and publication time."""
    statement: Select[Any] = select(Episode).where(Episode.podcast_id == podcast_id)
    if q:
        statement = statement.where(contains(Episode.title, q))
    if published_from is not None:
        statement = statement.where(Episode.published_at >= published_from)
    if published_to is not None:
        statement = statement.where(Episode.published_at < published_to)
    return await _episodes.page(session, statement, limit=limit, cursor=cursor)


async def update_episode(session: AsyncSession, actor: Actor, episode: Episode, data: EpisodeUpdate) -> Episode:
    before = audit.snapshot(episode, EPISODE_FIELDS)
    changes = data.model_dump(exclude_unset=True)
    if "title" in changes and changes["title"] is None:
        raise Invalid("title cannot be null", field="title")
    for field, value in changes.items():
        setattr(episode, field, value)
    await session.flush()
    await session.refresh(episode)
    await audit.record(
        session, tenant_id=episode.tenant_id, actor=actor, action="update", entity_type="episode",
        entity_id=episode.id, before=before, after=audit.snapshot(episode, EPISODE_FIELDS),
    )  # fmt: skip
    if "audio_url" in changes and episode.audio_url:
        await measurement.episodes_changed(session, episode.tenant_id)
    return episode


async def delete_episode(session: AsyncSession, actor: Actor, episode: Episode) -> None:
    # Bookings of the episode keep running as bookings of the show (the key's ON DELETE SET NULL, done here
    # too: on Citus the key cannot do it).
    await session.execute(
        text("UPDATE bookings SET episode_id = NULL WHERE tenant_id = :t AND episode_id = :e"),
        {"t": episode.tenant_id, "e": episode.id},
    )
    await session.delete(episode)
    await session.flush()
    await audit.record(
        session, tenant_id=episode.tenant_id, actor=actor, action="delete", entity_type="episode",
        entity_id=episode.id, before={"title": episode.title},
    )  # fmt: skip


# --- feed sync -----------------------------------------------------------------------------------


@dataclass
class _Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    left_feed: int = 0


def _episode_values(item: rss.ParsedEpisode) -> dict[str, Any]:
    return {
        "title": (item.title or "").strip()[:1000] or "Untitled episode",
        "description": item.description_html,
        "episode_number": item.episode_number,
        "season": item.season,
        "published_at": item.published_at,
        "duration_seconds": item.duration_seconds,
        "audio_url": item.audio_url,
        "audio_type": item.audio_type,
        "audio_length_bytes": item.audio_length_bytes,
        "explicit": item.explicit,
        "image_url": item.image_url,
    }


async def apply_feed(session: AsyncSession, podcast: Podcast, parsed: rss.ParsedFeed) -> _Counts:
    """Upsert the feed's episodes by guid (idempotent: an unchanged feed changes nothing), mark episodes
    that left the feed (never deleting them), and announce each new one with ``episode.published``."""
    counts = _Counts()
    existing = {
        row.guid: row
        for row in (await session.execute(select(Episode).where(Episode.podcast_id == podcast.id))).scalars()
    }
    new_rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in parsed.episodes:
        guid = item.guid[:2000]
        if guid in seen:
            continue
        seen.add(guid)
        values = _episode_values(item)
        current = existing.get(guid)
        if current is None:
            new_rows.append(
                {"tenant_id": podcast.tenant_id, "id": uuid.uuid4(), "podcast_id": podcast.id, "guid": guid, **values}
            )
            continue
        changed = {f: v for f, v in values.items() if getattr(current, f) != v}
        if not current.in_feed:
            changed.update(in_feed=True, left_feed_at=None)
        if changed:
            for field, value in changed.items():
                setattr(current, field, value)
            counts.updated += 1
        else:
            counts.unchanged += 1
    if new_rows:
        await session.execute(insert(Episode), new_rows)
        counts.created = len(new_rows)
        await session.execute(
            insert(OutboxEvent),
            [
                {
                    "tenant_id": podcast.tenant_id,
                    "event_type": "episode.published",
                    "payload": {"episode_id": str(r["id"]), "podcast_id": str(podcast.id), "title": r["title"]},
                }
                for r in new_rows
            ],
        )
    gone = [e.id for guid, e in existing.items() if guid not in seen and e.in_feed]
    if gone:
        await session.execute(
            update(Episode).where(Episode.id.in_(gone)).values(in_feed=False, left_feed_at=func.now())
        )
        counts.left_feed = len(gone)
    for field, value in (
        ("description", parsed.description_html),
        ("image_url", parsed.image_url),
        ("author", parsed.author),
        ("language", parsed.language),
        ("podcast_guid", parsed.podcast_guid),
    ):
        if value is not None and getattr(podcast, field) != value:
            setattr(podcast, field, value)
    if podcast.website_url is None and parsed.website_url:
        podcast.website_url = parsed.website_url
    await session.flush()
    if counts.created or counts.updated:
        await measurement.episodes_changed(session, podcast.tenant_id)
    return counts


async def sync_podcast(
    db: Database, settings: Settings, tenant_id: uuid.UUID, podcast_id: uuid.UUID, trigger: str
) -> SyncReport:
    """Fetch the podcast's feed (conditional GET), apply it, and record the sync in its history.

    A failed fetch is recorded too, then raised (a ``FeedFetchError``, answered as a 422 problem)."""
    started = time.perf_counter()
    async with db.tenant_transaction(tenant_id) as session:
        podcast = await get_podcast(session, podcast_id)
        if not podcast.rss_feed_url:
            raise Invalid("this podcast has no rss_feed_url to sync from", field="rss_feed_url")
        url, etag, last_modified = podcast.rss_feed_url, podcast.feed_etag, podcast.feed_last_modified
        interval = podcast.sync_interval_minutes
    try:
        result = await fetch.fetch_feed(
            url, etag=etag, last_modified=last_modified, allow_private=settings.allow_private_fetch,
            max_bytes=settings.feed_max_bytes,
        )  # fmt: skip
    except fetch.FeedFetchError as exc:
        async with db.tenant_transaction(tenant_id) as session:
            session.add(
                PodcastSync(
                    tenant_id=tenant_id,
                    podcast_id=podcast_id,
                    trigger=trigger,
                    outcome="failed",
                    http_status=exc.status,
                    error=exc.detail,
                    duration_ms=int((time.perf_counter() - started) * 1000),
                )  # fmt: skip
            )
            await session.execute(
                update(Podcast)
                .where(Podcast.id == podcast_id)
                .values(next_sync_at=datetime.now(UTC) + timedelta(minutes=interval))
            )
        raise
    parsed = rss.parse_feed(result.body, base_url=result.final_url) if result.body is not None else None
    async with db.tenant_transaction(tenant_id) as session:
        podcast = await get_podcast(session, podcast_id)
        counts = await apply_feed(session, podcast, parsed) if parsed is not None else _Counts()
        now = datetime.now(UTC)
        podcast.feed_etag, podcast.feed_last_modified = result.etag, result.last_modified
        podcast.last_synced_at = now
        podcast.next_sync_at = now + timedelta(minutes=podcast.sync_interval_minutes)
        if result.body is not None:
            await session.merge(
                PodcastFeed(
                    tenant_id=tenant_id,
                    podcast_id=podcast_id,
                    body=result.body,
                    content_type=result.content_type,
                    fetched_at=now,
                )  # fmt: skip
            )
        warnings = parsed.warnings if parsed is not None else []
        report = SyncReport(
            created=counts.created, updated=counts.updated, unchanged=counts.unchanged, left_feed=counts.left_feed,
            outcome="not_modified" if result.not_modified else "ok", http_status=result.status,
            warnings=warnings, duration_ms=int((time.perf_counter() - started) * 1000),
        )  # fmt: skip
        session.add(
            PodcastSync(
                tenant_id=tenant_id,
                podcast_id=podcast_id,
                trigger=trigger,
                outcome=report.outcome,
                http_status=result.status,
                created=counts.created,
                updated=counts.updated,
                unchanged=counts.unchanged,
                left_feed=counts.left_feed,
                warnings=warnings[:500],
                duration_ms=report.duration_ms,
            )  # fmt: skip
        )
    log.info("catalog.synced", podcast_id=str(podcast_id), **report.model_dump(exclude={"warnings"}))
    return report


async def sync_history(
    session: AsyncSession, podcast_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[Sequence[PodcastSync], str | None]:
    statement = select(PodcastSync).where(PodcastSync.podcast_id == podcast_id)
    return await _syncs.page(session, statement, limit=limit, cursor=cursor)


async def due_podcasts(db: Database, limit: int = 50) -> list[tuple[uuid.UUID, uuid.UUID]]:
    async with db.transaction() as session:
        rows = await session.execute(text("SELECT * FROM catalog_due_podcasts(:n)"), {"n": limit})
        return [(row.tenant_id, row.podcast_id) for row in rows]


@dataclass(frozen=True)
class TrackedFeed:
    tenant_slug: str
    body: bytes
    content_type: str | None


async def tracked_feed_source(db: Database, podcast_id: uuid.UUID) -> TrackedFeed:
    """The last fetched feed of a podcast, through the narrow definer function (public route)."""
    async with db.transaction() as session:
        row = (await session.execute(text("SELECT * FROM catalog_tracked_feed(:p)"), {"p": podcast_id})).first()
    if row is None:
        raise NotFound("no feed has been fetched for this podcast")
    return TrackedFeed(tenant_slug=row.tenant_slug, body=bytes(row.body), content_type=row.content_type)


async def import_feed(
    owner: Database, runtime: Database, settings: Settings, url: str, tenant_slug: str
) -> tuple[Podcast, SyncReport]:
    """``castmetrics import-rss``: the tenant's podcast for this feed URL (created if new, named after
    the feed until renamed), synced now. Only the slug lookup uses the owner (it crosses tenants)."""
    async with owner.transaction() as session:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == tenant_slug))
    if tenant_id is None:
        raise NotFound(f"no tenant with slug {tenant_slug!r}")
    actor = Actor.system("cli:import-rss")
    async with runtime.tenant_transaction(tenant_id) as session:
        podcast = await session.scalar(select(Podcast).where(Podcast.rss_feed_url == url))
        if podcast is None:
            tenant = await session.get_one(Tenant, tenant_id)
            podcast = await create_podcast(session, tenant, actor, PodcastIn(name=url[:500], rss_feed_url=url))
            named_after_feed = True
        else:
            named_after_feed = False
        podcast_id = podcast.id
    report = await sync_podcast(runtime, settings, tenant_id, podcast_id, "cli")
    async with runtime.tenant_transaction(tenant_id) as session:
        podcast = await get_podcast(session, podcast_id)
        feed = await session.get(PodcastFeed, (tenant_id, podcast_id))
        if named_after_feed and feed is not None:
            title = rss.parse_feed(feed.body).title
            if title:
                podcast.name = title.strip()[:500]
    return podcast, report


async def seed_from_document(session: AsyncSession, tenant: Tenant, actor: Actor, body: bytes) -> Podcast:
    """A podcast built from a feed document already at hand (the demo): no fetch, no schedule."""
    parsed = rss.parse_feed(body)
    name = (parsed.title or "Untitled podcast").strip()[:500]
    existing = await session.scalar(select(Podcast).where(Podcast.name == name))
    if existing is not None:
        return existing
    podcast = await create_podcast(session, tenant, actor, PodcastIn(name=name))
    await apply_feed(session, podcast, parsed)
    session.add(PodcastFeed(tenant_id=tenant.id, podcast_id=podcast.id, body=body, content_type="application/rss+xml"))
    podcast.last_synced_at = datetime.now(UTC)
    await session.flush()
    return podcast


async def names(
    session: AsyncSession, podcast_ids: Iterable[uuid.UUID], episode_ids: Iterable[uuid.UUID]
) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, str]]:
    """Podcast names and episode titles by id (of the current tenant), in at most two queries."""
    podcasts, episodes = set(podcast_ids), set(episode_ids)
    podcast_names: dict[uuid.UUID, str] = {}
    episode_titles: dict[uuid.UUID, str] = {}
    if podcasts:
        rows = await session.execute(select(Podcast.id, Podcast.name).where(Podcast.id.in_(podcasts)))
        podcast_names = {row.id: row.name for row in rows}
    if episodes:
        rows = await session.execute(select(Episode.id, Episode.title).where(Episode.id.in_(episodes)))
        episode_titles = {row.id: row.title for row in rows}
    return podcast_names, episode_titles
