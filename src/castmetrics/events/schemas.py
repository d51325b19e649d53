"""Request and answer shapes of the event routes (documented in OpenAPI; parsing is hand-written)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field


class Rejected(BaseModel):
    index: int = Field(description="Position of the refused item in the batch (0-based; NDJSON: non-blank line).")
    error: str


class IngestOut(BaseModel):
    accepted: int = Field(description="Events stored by this request.")
    duplicates: int = Field(description="Events already stored (a retry) or repeated in the batch.")
    rejected: list[Rejected]


class ListenerEventIn(BaseModel):
    id: UUID | None = Field(default=None, description="Idempotency key with occurred_at; generated when absent.")
    episode_id: UUID
    listener_id: str = Field(min_length=1, max_length=200)
    event_type: Literal["download", "play", "pause", "resume", "seek", "skip", "progress", "complete"]
    event_data: dict[str, Any] | None = Field(
        default=None, description="Free-form; `listened_seconds` (0–86400) counts toward listening time."
    )
    occurred_at: datetime = Field(description="With a zone; within the retention and at most a day ahead.")


class AttributionEventIn(BaseModel):
    id: UUID | None = None
    campaign_id: UUID
    episode_id: UUID | None = None
    listener_id: str = Field(min_length=1, max_length=200)
    attribution_type: Literal["impression", "click", "visit", "signup", "conversion"]
    attribution_data: dict[str, Any] | None = Field(
        default=None, description="For a conversion: `revenue` (major units) and `currency` (ISO 4217)."
    )
    occurred_at: datetime


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a JSON array or NDJSON of ``model``."""
    schema = {"type": "array", "maxItems": 10_000, "items": model.model_json_schema()}
    line = {"type": "string", "description": f"One {model.__name__} JSON object per line, at most 10,000 lines."}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "application/x-ndjson": {"schema": line},
                "application/ndjson": {"schema": line},
            },
        }
    }
