"""Shapes of the sponsor report and of its share links."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from castmetrics.attribution.schemas import AttributionOut, Model, Returns
from castmetrics.sponsorship.schemas import CampaignPacingOut, LookbackDays, Stage

ReportFormat = Literal["json", "csv", "pdf"]
LINK_DAYS_DEFAULT = 14
LINK_DAYS_MAX = 90


class ReportCampaign(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    stage: Stage
    description: str | None
    start_date: date | None
    end_date: date | None
    lookback_days: int = Field(description="The campaign's own lookback (a request or link may override it).")


class ReportSponsor(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    website_url: str | None


class ReportBooking(BaseModel):
    """What a booking of the pacing table runs on, by name."""

    booking_id: uuid.UUID
    podcast_id: uuid.UUID
    podcast_name: str
    episode_id: uuid.UUID | None
    episode_title: str | None = Field(description="Null for a booking on the whole podcast (run of show).")


class ReportDay(BaseModel):
    """One UTC day of the campaign: delivery summed over its bookings, and the chosen model's returns."""

    day: date
    delivered: int = Field(description="Impressions delivered that day, summed over the pacing's bookings.")
    expected: float = Field(
        description="Even-delivery expectation for that day: each booking's booked impressions spread evenly "
        "over its flight days, summed."
    )
    conversions: float = Field(description="Conversion credit of the chosen model on that day.")
    revenue: float
    spend: float


class ModelTotals(Returns):
    """One model's totals in the five-model comparison."""

    model: Model
    touchpoints: int
    unattributed_conversions: int


class ReportOut(BaseModel):
    """One campaign's delivery, pacing and attribution, as the JSON, CSV and PDF reports show it."""

    model_config = ConfigDict(populate_by_name=True)

    as_of: datetime = Field(description="When the report was computed.")
    campaign: ReportCampaign
    sponsor: ReportSponsor | None
    model: Model = Field(description="The attribution model of `attribution` and of the days' conversions.")
    lookback_days: int
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None
    currency: str
    flight_start: date | None = Field(description="The first day any live booking flies (else the campaign's start).")
    flight_end: date | None = Field(description="The last day any live booking flies (else the campaign's end).")
    pacing: CampaignPacingOut = Field(description="As `GET /v1/campaigns/{id}/pacing` answers it.")
    bookings: list[ReportBooking] = Field(description="The pacing's bookings, named.")
    attribution: AttributionOut = Field(description="The chosen model, with its days, bookings, podcasts, episodes.")
    comparison: list[ModelTotals] = Field(description="The five models' totals side by side.")
    days: list[ReportDay] = Field(description="Every day from the first flight day (or conversion) to the last.")


ExpiresInDays = Annotated[
    int,
    Field(ge=1, le=LINK_DAYS_MAX, description=f"Days the link works, 1–{LINK_DAYS_MAX} (default {LINK_DAYS_DEFAULT})."),
]


class ReportLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_in_days: ExpiresInDays = LINK_DAYS_DEFAULT
    model: Model = "last_touch"
    lookback_days: LookbackDays | None = Field(
        default=None, description="Overrides the campaign's lookback for this link (1–365 days)."
    )


class ReportLinkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    campaign_id: uuid.UUID
    url: str | None = Field(
        default=None, description="The public report URL (add `?format=pdf` or `csv`); shown once, at creation."
    )
    token: str | None = Field(default=None, description="The signed token in `url`; shown once, at creation.")
    model: Model
    lookback_days: int | None
    created_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
