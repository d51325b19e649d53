"""The ``tenants`` table (platform-wide: a tenant sees only its own row through RLS)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from castmetrics.db.base import Base

TIERS = ("free", "pro", "enterprise")
STATUSES = ("active", "suspended", "cancelled")


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    domain: Mapped[str | None] = mapped_column(Text, unique=True)
    subscription_tier: Mapped[str] = mapped_column(Text, server_default="free")
    status: Mapped[str] = mapped_column(Text, server_default="active")
    subscription_status: Mapped[str] = mapped_column(Text, server_default="none")
    billing_email: Mapped[str | None] = mapped_column(Text)
    # Stripe's time of the last subscription event applied: an older one delivered later is stale.
    billing_state_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    time_zone: Mapped[str] = mapped_column(Text, server_default="UTC")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
