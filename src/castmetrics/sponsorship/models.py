"""Sponsorship tables: sponsors, campaigns, their stage history, and IO bookings."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from castmetrics.db.base import Base


class Sponsor(Base):
    __tablename__ = "sponsors"

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text)
    website_url: Mapped[str | None] = mapped_column(Text)
    logo_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (ForeignKeyConstraint(["tenant_id", "sponsor_id"], ["sponsors.tenant_id", "sponsors.id"]),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    sponsor_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    stage: Mapped[str] = mapped_column(Text, server_default="draft")
    lookback_days: Mapped[int] = mapped_column(Integer, server_default="30")
    stage_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class CampaignStageChange(Base):
    __tablename__ = "campaign_stage_changes"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"], ondelete="CASCADE"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    campaign_id: Mapped[uuid.UUID] = mapped_column(UUID)
    from_stage: Mapped[str | None] = mapped_column(Text)
    to_stage: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    actor_type: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["tenant_id", "podcast_id"], ["podcasts.tenant_id", "podcasts.id"], ondelete="CASCADE"),
        # PostgreSQL 15's column list: a deleted episode or original clears that column alone (the key's
        # tenant_id and campaign_id stay).
        ForeignKeyConstraint(
            ["tenant_id", "episode_id"], ["episodes.tenant_id", "episodes.id"], ondelete="SET NULL (episode_id)"
        ),
        ForeignKeyConstraint(
            ["tenant_id", "campaign_id", "make_good_of"],
            ["bookings.tenant_id", "bookings.campaign_id", "bookings.id"],
            ondelete="SET NULL (make_good_of)",
        ),
        UniqueConstraint("tenant_id", "campaign_id", "id", name="uq_bookings_campaign_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    campaign_id: Mapped[uuid.UUID] = mapped_column(UUID)
    podcast_id: Mapped[uuid.UUID] = mapped_column(UUID)
    episode_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    placement: Mapped[str] = mapped_column(Text)
    ad_format: Mapped[str | None] = mapped_column(Text)
    pricing_model: Mapped[str] = mapped_column(Text)
    rate_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    booked_impressions: Mapped[int] = mapped_column(BigInteger)
    flight_start: Mapped[date] = mapped_column(Date)
    flight_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    promo_code: Mapped[str | None] = mapped_column(Text)
    vanity_url: Mapped[str | None] = mapped_column(Text)
    make_good_of: Mapped[uuid.UUID | None] = mapped_column(UUID)
    pacing_behind_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
