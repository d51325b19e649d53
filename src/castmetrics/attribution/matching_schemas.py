"""Answer shape of sponsor–podcast matching: each podcast's score and the components it is made of."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, Field


class MatchComponent(BaseModel):
    """One part of the score: its raw ``value`` and the ``score`` (0..1) it contributes before weighting."""

    value: float | None = Field(description="The raw measure; null when there is nothing to measure it on.")
    score: float = Field(ge=0, le=1, description="The component normalised to 0..1 (0 without data).")


class AudienceComponent(MatchComponent):
    value: float | None = Field(description="IAB downloads of the podcast over the last 30 UTC days.")
    downloads_30d: int


class ListenThroughComponent(MatchComponent):
    value: float | None = Field(description="completes ÷ plays over the last 90 UTC days; null without plays.")
    plays_90d: int
    completes_90d: int


class ConversionRateComponent(MatchComponent):
    value: float | None = Field(
        description="The smoothed conversions per touchpoint of this and similar sponsors on the podcast; "
        "null when neither has a touchpoint there."
    )
    own_conversions: float = Field(description="Linear credit earned by this sponsor's touchpoints on the podcast.")
    own_touchpoints: int
    similar_conversions: float = Field(description="Σ similarity × credit of similar sponsors' touchpoints.")
    similar_touchpoints: float = Field(description="Σ similarity × touchpoints of similar sponsors.")
    raw_rate: float | None = Field(description="(own + similar conversions) ÷ (own + similar touchpoints).")


class InventoryComponent(MatchComponent):
    value: float | None = Field(description="Share of (placement × day) slots free over the coming weeks.")
    free_slots: int
    total_slots: int


class MatchComponents(BaseModel):
    audience: AudienceComponent
    listen_through: ListenThroughComponent
    conversion_rate: ConversionRateComponent
    inventory: InventoryComponent


class MatchOut(BaseModel):
    podcast_id: uuid.UUID
    name: str
    score: float = Field(ge=0, le=1, description="Σ weight × component score.")
    components: MatchComponents


class MatchWeights(BaseModel):
    audience: float
    listen_through: float
    conversion_rate: float
    inventory: float


class SimilarSponsor(BaseModel):
    sponsor_id: uuid.UUID
    name: str
    similarity: float = Field(
        description="Jaccard index of the two sponsors' sets of podcasts with live bookings (0 < similarity ≤ 1)."
    )
    shared_podcasts: int


class MatchesOut(BaseModel):
    sponsor_id: uuid.UUID
    weights: MatchWeights
    audience_from: date = Field(description="First UTC day of the audience window (30 days to today).")
    listen_through_from: date = Field(description="First UTC day of the listen-through window (90 days).")
    conversions_from: date = Field(description="First UTC day of the touchpoints counted (180 days).")
    inventory_from: date = Field(description="First UTC day of the inventory window (tomorrow).")
    inventory_to: date = Field(description="Last UTC day of the inventory window.")
    tenant_conversion_rate: float = Field(
        description="Credited conversions per touchpoint over all the tenant's campaigns and podcasts: the prior."
    )
    prior_touchpoints: int = Field(description="Weight of the prior, in touchpoints.")
    similar_sponsors: list[SimilarSponsor] = Field(
        description="Sponsors whose campaigns share podcasts with this one, most similar first."
    )
    podcasts: int = Field(description="The tenant's podcasts ranked (the answer lists the first `limit`).")
    items: list[MatchOut] = Field(description="Podcasts by score, highest first; ties by name.")
