"""Catalog tables: podcasts, episodes, the sync history and the last fetched feed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from castmetrics.db.base import Base


class Podcast(Base):
    __tablename__ = "podcasts"

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    rss_feed_url: Mapped[str | None] = mapped_column(Text)
    website_url: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    podcast_guid: Mapped[str | None] = mapped_column(Text)
    sync_interval_minutes: Mapped[int] = mapped_column(Integer, server_default="60")
    next_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    feed_etag: Mapped[str | None] = mapped_column(Text)
    feed_last_modified: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Episode(Base):
    __tablename__ = "episodes"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "podcast_id"], ["podcasts.tenant_id", "podcasts.id"], ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "podcast_id", "guid", name="uq_episodes_guid"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    podcast_id: Mapped[uuid.UUID] = mapped_column(UUID)
    guid: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    episode_number: Mapped[int | None] = mapped_column(Integer)
    season: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    audio_url: Mapped[str | None] = mapped_column(Text)
    audio_type: Mapped[str | None] = mapped_column(Text)
    audio_length_bytes: Mapped[int | None] = mapped_column(BigInteger)
    explicit: Mapped[bool | None] = mapped_column(Boolean)
    image_url: Mapped[str | None] = mapped_column(Text)
    in_feed: Mapped[bool] = mapped_column(Boolean, server_default="true")
    left_feed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PodcastSync(Base):
    __tablename__ = "podcast_syncs"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "podcast_id"], ["podcasts.tenant_id", "podcasts.id"], ondelete="CASCADE"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    podcast_id: Mapped[uuid.UUID] = mapped_column(UUID)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    duration_ms: Mapped[int] = mapped_column(Integer, server_default="0")
    trigger: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(Text)
    created: Mapped[int] = mapped_column(Integer, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, server_default="0")
    unchanged: Mapped[int] = mapped_column(Integer, server_default="0")
    left_feed: Mapped[int] = mapped_column(Integer, server_default="0")
    warnings: Mapped[list[Any]] = mapped_column(JSONB, server_default="[]")
    error: Mapped[str | None] = mapped_column(Text)


class PodcastFeed(Base):
    __tablename__ = "podcast_feeds"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "podcast_id"], ["podcasts.tenant_id", "podcasts.id"], ondelete="CASCADE"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    podcast_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
