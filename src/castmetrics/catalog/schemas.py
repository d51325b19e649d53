"""Request and response shapes of podcasts, episodes and syncs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from castmetrics.http.fields import Url

Title = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
Text = Annotated[str, Field(max_length=100_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PodcastIn(Strict):
    name: Title
    rss_feed_url: Url | None = None
    website_url: Url | None = None
    description: Text | None = None
    sync_interval_minutes: Annotated[int, Field(ge=5, le=10080)] = 60


class PodcastUpdate(Strict):
    name: Title | None = None
    rss_feed_url: Url | None = None
    website_url: Url | None = None
    description: Text | None = None
    sync_interval_minutes: Annotated[int, Field(ge=5, le=10080)] | None = None


class PodcastOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    description: str | None
    rss_feed_url: str | None
    website_url: str | None
    image_url: str | None
    author: str | None
    language: str | None
    podcast_guid: str | None
    sync_interval_minutes: int
    last_synced_at: datetime | None
    created_at: datetime
    updated_at: datetime
    tracked_feed_url: str = ""


class EpisodeIn(Strict):
    title: Title
    published_at: datetime | None = None
    duration_seconds: Annotated[int, Field(ge=0, le=100 * 3600)] | None = None
    audio_url: Url | None = None
    episode_number: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    description: Text | None = None


class EpisodeUpdate(Strict):
    title: Title | None = None
    published_at: datetime | None = None
    duration_seconds: Annotated[int, Field(ge=0, le=100 * 3600)] | None = None
    audio_url: Url | None = None
    episode_number: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    description: Text | None = None


class EpisodeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    podcast_id: uuid.UUID
    guid: str
    title: str
    description: str | None
    episode_number: int | None
    season: int | None
    published_at: datetime | None
    duration_seconds: int | None
    audio_url: str | None
    audio_length_bytes: int | None
    explicit: bool | None
    in_feed: bool
    created_at: datetime
    updated_at: datetime
    prefix_url: str | None = Field(default=None, description="The audio URL through the measurement prefix.")


class SyncReport(BaseModel):
    created: int
    updated: int
    unchanged: int
    left_feed: int = 0
    outcome: str
    http_status: int | None = None
    warnings: list[str] = Field(default_factory=list)
    duration_ms: int = 0


class SyncOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    started_at: datetime
    duration_ms: int
    trigger: str
    http_status: int | None
    outcome: str
    created: int
    updated: int
    unchanged: int
    left_feed: int
    warnings: list[Any]
    error: str | None
