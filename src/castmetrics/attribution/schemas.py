"""Answer shapes of the attribution routes."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

Model = Literal["first_touch", "last_touch", "linear", "time_decay", "position_based"]
MODELS: tuple[Model, ...] = ("first_touch", "last_touch", "linear", "time_decay", "position_based")


class Returns(BaseModel):
    """Conversions credited, revenue, spend and the ratios (DESIGN.md Attribution). Money is in
    major units of ``currency``; a ratio whose divisor is 0 is null."""

    conversions: float = Field(description="Fractional credit: the sum of this slice's touchpoints' credits.")
    revenue: float = Field(description="Sum of credit × conversion revenue, in major units.")
    spend: float = Field(description="Spend of the campaign's live bookings in this slice, in major units.")
    roi: float | None = Field(description="(revenue − spend) / spend; null when spend is 0.")
    roas: float | None = Field(description="revenue / spend; null when spend is 0.")
    cpa: float | None = Field(description="spend / conversions; null when conversions is 0.")


class DayReturns(Returns):
    day: date = Field(description="The conversion's day (UTC unless `tz`); spend on that day.")


class BookingReturns(Returns):
    booking_id: uuid.UUID
    podcast_id: uuid.UUID
    episode_id: uuid.UUID | None


class PodcastReturns(BaseModel):
    podcast_id: uuid.UUID
    name: str
    conversions: float
    revenue: float


class EpisodeReturns(BaseModel):
    episode_id: uuid.UUID
    podcast_id: uuid.UUID
    title: str
    conversions: float
    revenue: float


class AttributionOut(Returns):
    model: Model
    campaign_id: uuid.UUID
    currency: str = Field(description="ISO 4217 code of the campaign's bookings (USD when it has none).")
    lookback_days: int
    half_life_days: float = Field(description="Half-life of the time_decay model.")
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None
    touchpoints: int = Field(description="Touchpoints of this campaign that earned any credit.")
    unattributed_conversions: int = Field(
        description="Conversions recorded on this campaign with no touchpoint of its sponsor in the lookback."
    )
    other_currency_conversions: int = Field(
        description="Conversions credited to this campaign whose revenue is in another currency: counted in "
        "`conversions`, left out of `revenue` (no exchange rates are applied)."
    )
    days: list[DayReturns] = Field(default_factory=list)
    bookings: list[BookingReturns] = Field(default_factory=list)
    podcasts: list[PodcastReturns] = Field(default_factory=list)
    episodes: list[EpisodeReturns] = Field(default_factory=list, description="The top episodes by conversions.")

    model_config = {"populate_by_name": True}


class CompareOut(BaseModel):
    campaign_id: uuid.UUID
    currency: str
    lookback_days: int
    half_life_days: float
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None
    models: list[AttributionOut]

    model_config = {"populate_by_name": True}
