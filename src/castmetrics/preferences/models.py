"""The ``email_preferences`` tenant table: one row per user who changed a default."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKeyConstraint, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from castmetrics.db.base import Base


class EmailPreference(Base):
    __tablename__ = "email_preferences"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    # Keep in step with ``schemas.DEFAULTS`` (a user without a row has those values).
    weekly_digest: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    campaign_alerts: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    product_news: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
