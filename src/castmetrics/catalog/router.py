"""Podcast and episode routes, feed syncs, and the public tracked feed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from castmetrics.auth.dependencies import requires, settings_of
from castmetrics.auth.principal import Principal
from castmetrics.catalog import service, tracked_feed
from castmetrics.catalog.models import Episode, Podcast
from castmetrics.catalog.schemas import (
    EpisodeIn,
    EpisodeOut,
    EpisodeUpdate,
    PodcastIn,
    PodcastOut,
    PodcastUpdate,
    SyncOut,
    SyncReport,
)
from castmetrics.config import Settings
from castmetrics.errors import RateLimited
from castmetrics.http.deps import get_database
from castmetrics.http.pagination import CursorParam, Limit, Page
from castmetrics.http.timerange import parse_bound

router = APIRouter(prefix="/v1", tags=["catalog"])
SYNC_SLOTS = asyncio.Semaphore(4)
feeds_router = APIRouter(tags=["catalog"])
Search = Annotated[str | None, Query(max_length=200, description="Case-insensitive substring of the title.")]


def _podcast_out(settings: Settings, podcast: Podcast) -> PodcastOut:
    out = PodcastOut.model_validate(podcast)
    out.tracked_feed_url = service.tracked_feed_url(settings, podcast.id)
    return out


def _episode_out(settings: Settings, principal: Principal, episode: Episode) -> EpisodeOut:
    out = EpisodeOut.model_validate(episode)
    out.prefix_url = service.prefix_url(settings, principal.tenant.slug, episode.audio_url)
    return out


@router.get("/podcasts", response_model=Page[PodcastOut], summary="List podcasts")
async def list_podcasts(
    request: Request,
    principal: Annotated[Principal, requires("podcasts", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
    q: Search = None,
) -> Page[PodcastOut]:
    """The tenant's podcasts, newest first, optionally filtered by name."""
    podcasts, next_cursor = await service.list_podcasts(principal.session, limit=limit, cursor=cursor, q=q)
    settings = settings_of(request)
    return Page(items=[_podcast_out(settings, p) for p in podcasts], next_cursor=next_cursor)


@router.post("/podcasts", status_code=status.HTTP_201_CREATED, response_model=PodcastOut, summary="Create a podcast")
async def create_podcast(
    body: PodcastIn, request: Request, principal: Annotated[Principal, requires("podcasts", "create")]
) -> PodcastOut:
    """A podcast, optionally with its RSS feed (sync it with `POST /v1/podcasts/{id}/sync`). Counts
    against the podcasts quota (402 when full)."""
    podcast = await service.create_podcast(principal.session, principal.tenant, principal.actor, body)
    return _podcast_out(settings_of(request), podcast)


@router.get("/podcasts/{podcast_id}", response_model=PodcastOut, summary="Get a podcast")
async def get_podcast(
    podcast_id: uuid.UUID, request: Request, principal: Annotated[Principal, requires("podcasts", "read")]
) -> PodcastOut:
    """One podcast, with its tracked feed URL."""
    return _podcast_out(settings_of(request), await service.get_podcast(principal.session, podcast_id))


@router.patch("/podcasts/{podcast_id}", response_model=PodcastOut, summary="Update a podcast")
async def update_podcast(
    podcast_id: uuid.UUID,
    body: PodcastUpdate,
    request: Request,
    principal: Annotated[Principal, requires("podcasts", "update")],
) -> PodcastOut:
    """Change the name, feed URL, website, description or sync interval (minutes)."""
    podcast = await service.get_podcast(principal.session, podcast_id)
    podcast = await service.update_podcast(principal.session, principal.actor, podcast, body)
    return _podcast_out(settings_of(request), podcast)


@router.delete("/podcasts/{podcast_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a podcast")
async def delete_podcast(
    podcast_id: uuid.UUID, principal: Annotated[Principal, requires("podcasts", "delete")]
) -> Response:
    """Delete a podcast with its episodes and sync history."""
    await service.delete_podcast(
        principal.session, principal.actor, await service.get_podcast(principal.session, podcast_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/podcasts/{podcast_id}/sync", response_model=SyncReport, summary="Sync from the RSS feed now")
async def sync_podcast(
    podcast_id: uuid.UUID, request: Request, principal: Annotated[Principal, requires("podcasts", "update")]
) -> SyncReport:
    """Fetch the feed (conditional GET) and upsert its episodes by guid: `{created, updated, unchanged}`
    plus episodes that left the feed and per-item warnings. A fetch that fails answers 422."""
    tenant_id = principal.tenant.id
    await service.get_podcast(principal.session, podcast_id)  # 404 before any fetch
    # The request holds a pooled connection while the sync takes others: a bounded number of syncs
    # per process keeps a burst of them from exhausting the pool for every tenant.
    if SYNC_SLOTS.locked():
        raise RateLimited("too many feed syncs are running; try again shortly", retry_after=5)
    async with SYNC_SLOTS:
        return await service.sync_podcast(get_database(request), settings_of(request), tenant_id, podcast_id, "api")


@router.get("/podcasts/{podcast_id}/syncs", response_model=Page[SyncOut], summary="Sync history")
async def sync_history(
    podcast_id: uuid.UUID,
    principal: Annotated[Principal, requires("podcasts", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
) -> Page[SyncOut]:
    """Every sync of the podcast, newest first: time, HTTP status, counts, warnings, duration."""
    await service.get_podcast(principal.session, podcast_id)
    syncs, next_cursor = await service.sync_history(principal.session, podcast_id, limit=limit, cursor=cursor)
    return Page(items=[SyncOut.model_validate(s) for s in syncs], next_cursor=next_cursor)


@router.get("/podcasts/{podcast_id}/episodes", response_model=Page[EpisodeOut], summary="List episodes")
async def list_episodes(
    podcast_id: uuid.UUID,
    request: Request,
    principal: Annotated[Principal, requires("episodes", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
    q: Search = None,
    published_from: Annotated[str | None, Query(max_length=40)] = None,
    published_to: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[EpisodeOut]:
    """The podcast's episodes, newest first; filter by title and publication range (dates or zoned
    datetimes; a date `published_to` includes that day)."""
    await service.get_podcast(principal.session, podcast_id)
    episodes, next_cursor = await service.list_episodes(
        principal.session, podcast_id, limit=limit, cursor=cursor, q=q,
        published_from=parse_bound(published_from, name="published_from", end=False),
        published_to=parse_bound(published_to, name="published_to", end=True),
    )  # fmt: skip
    settings = settings_of(request)
    return Page(items=[_episode_out(settings, principal, e) for e in episodes], next_cursor=next_cursor)


@router.post(
    "/podcasts/{podcast_id}/episodes",
    status_code=status.HTTP_201_CREATED,
    response_model=EpisodeOut,
    summary="Create an episode",
)
async def create_episode(
    podcast_id: uuid.UUID,
    body: EpisodeIn,
    request: Request,
    principal: Annotated[Principal, requires("episodes", "create")],
) -> EpisodeOut:
    """An episode added by hand (feed episodes arrive by sync); announces `episode.published`."""
    podcast = await service.get_podcast(principal.session, podcast_id)
    episode = await service.create_episode(principal.session, principal.actor, podcast, body)
    return _episode_out(settings_of(request), principal, episode)


@router.get("/episodes/{episode_id}", response_model=EpisodeOut, summary="Get an episode")
async def get_episode(
    episode_id: uuid.UUID, request: Request, principal: Annotated[Principal, requires("episodes", "read")]
) -> EpisodeOut:
    """One episode, with its measurement prefix URL."""
    return _episode_out(settings_of(request), principal, await service.get_episode(principal.session, episode_id))


@router.patch("/episodes/{episode_id}", response_model=EpisodeOut, summary="Update an episode")
async def update_episode(
    episode_id: uuid.UUID,
    body: EpisodeUpdate,
    request: Request,
    principal: Annotated[Principal, requires("episodes", "update")],
) -> EpisodeOut:
    """Change an episode's fields (a later feed sync may write feed fields again)."""
    episode = await service.get_episode(principal.session, episode_id)
    episode = await service.update_episode(principal.session, principal.actor, episode, body)
    return _episode_out(settings_of(request), principal, episode)


@router.delete("/episodes/{episode_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete an episode")
async def delete_episode(
    episode_id: uuid.UUID, principal: Annotated[Principal, requires("episodes", "delete")]
) -> Response:
    """Delete an episode."""
    await service.delete_episode(
        principal.session, principal.actor, await service.get_episode(principal.session, episode_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@feeds_router.get(
    "/feeds/{podcast_id}.xml",
    summary="Tracked feed",
    response_class=Response,
    responses={200: {"content": {"application/rss+xml": {}}}},
)
async def tracked_feed_xml(podcast_id: uuid.UUID, request: Request) -> Response:
    """The podcast's original feed with every enclosure rewritten through the measurement prefix —
    point directories at this URL to switch measurement on without touching the host. Public."""
    settings = settings_of(request)
    source = await service.tracked_feed_source(get_database(request), podcast_id)
    prefix_base = f"{settings.public_url.rstrip('/')}/p/{source.tenant_slug}"
    body = tracked_feed.rewrite_enclosures(source.body, prefix_base)
    # A tenant's feed is untrusted markup served on our origin: a browser must never run anything in it.
    headers = {
        "Cache-Control": "public, max-age=300",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(body, media_type="application/rss+xml", headers=headers)
