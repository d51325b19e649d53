"""Attribution routes: one campaign under one model, all five models side by side, and the podcasts
that match a sponsor."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from castmetrics.attribution import matching, service
from castmetrics.attribution.matching_schemas import MatchesOut
from castmetrics.attribution.schemas import AttributionOut, CompareOut, Model
from castmetrics.auth.dependencies import requires
from castmetrics.auth.principal import Principal
from castmetrics.errors import Invalid
from castmetrics.http.timerange import parse_bound
from castmetrics.sponsorship import service as sponsorship

router = APIRouter(prefix="/v1", tags=["attribution"])
Reader = Annotated[Principal, requires("attribution", "read")]
LookbackDays = Annotated[
    int | None,
    Query(ge=1, le=365, description="Days before a conversion its touchpoints count; default the campaign's own."),
]
HalfLifeDays = Annotated[
    float,
    Query(
        ge=0.5,
        le=365,
        description="Half-life of the time_decay model, in days (default 7; at least half a day, so a "
        "365-day lookback spans at most 730 half-lives).",
    ),
]
From = Annotated[
    str | None, Query(alias="from", max_length=40, description="Conversions from: a date or a zoned datetime.")
]
To = Annotated[str | None, Query(max_length=40, description="Conversions to: a date (included) or a zoned datetime.")]


def options(lookback_days: int | None, half_life_days: float, start: str | None, end: str | None) -> service.Options:
    start_at = parse_bound(start, name="from", end=False)
    end_at = parse_bound(end, name="to", end=True)
    if start_at is not None and end_at is not None and start_at >= end_at:
        raise Invalid("from must be before to", parameter="from")
    return service.Options(lookback_days=lookback_days, half_life_days=half_life_days, start=start_at, end=end_at)


@router.get(
    "/campaigns/{campaign_id}/attribution",
    response_model=AttributionOut,
    response_model_by_alias=True,
    summary="A campaign's conversions, revenue, spend, ROI, ROAS and CPA under one model",
)
async def campaign_attribution(
    campaign_id: uuid.UUID,
    principal: Reader,
    model: Model = "last_touch",
    lookback_days: LookbackDays = None,
    half_life_days: HalfLifeDays = service.DEFAULT_HALF_LIFE_DAYS,
    start: From = None,
    to: To = None,
) -> AttributionOut:
    campaign = await sponsorship.get_campaign(principal.session, campaign_id)
    return await service.attribution(
        principal.session, campaign, model, options(lookback_days, half_life_days, start, to)
    )


@router.get(
    "/attribution/compare",
    response_model=CompareOut,
    response_model_by_alias=True,
    summary="A campaign under all five attribution models, side by side",
)
async def compare(
    campaign_id: uuid.UUID,
    principal: Reader,
    lookback_days: LookbackDays = None,
    half_life_days: HalfLifeDays = service.DEFAULT_HALF_LIFE_DAYS,
    start: From = None,
    to: To = None,
) -> CompareOut:
    campaign = await sponsorship.get_campaign(principal.session, campaign_id)
    return await service.compare(principal.session, campaign, options(lookback_days, half_life_days, start, to))


SponsorReader = Annotated[Principal, requires("sponsors", "read")]


@router.get(
    "/sponsors/{sponsor_id}/matches",
    response_model=MatchesOut,
    summary="The tenant's podcasts ranked for a sponsor, with each component of the score",
)
async def sponsor_matches(
    sponsor_id: uuid.UUID,
    principal: SponsorReader,
    limit: Annotated[int, Query(ge=1, le=100, description="How many podcasts to list (default 20).")] = (
        matching.DEFAULT_LIMIT
    ),
    weeks: Annotated[
        int, Query(ge=1, le=26, description="Weeks of inventory counted, from tomorrow (UTC; default 4).")
    ] = matching.DEFAULT_WEEKS,
) -> MatchesOut:
    """Every podcast of the tenant scored for the sponsor: `score` = 0.35·audience + 0.20·listen_through +
    0.30·conversion_rate + 0.15·inventory, each component in 0..1 with its raw numbers (docs/api.md,
    "Sponsor matching"). Best first; ties by podcast name."""
    sponsor = await sponsorship.get_sponsor(principal.session, sponsor_id)
    return await matching.matches(principal.session, sponsor, limit=limit, weeks=weeks)
