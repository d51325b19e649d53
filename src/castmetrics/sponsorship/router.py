"""Sponsor, campaign (with stage transitions and history) and IO booking routes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from castmetrics.auth.dependencies import requires
from castmetrics.auth.principal import Principal
from castmetrics.errors import Invalid
from castmetrics.http.pagination import CursorParam, Limit, Page
from castmetrics.http.timerange import parse_bound
from castmetrics.measurement import service as measurement
from castmetrics.sponsorship import pacing, service
from castmetrics.sponsorship.models import Booking, Campaign
from castmetrics.sponsorship.schemas import (
    BookingIn,
    BookingOut,
    BookingStatus,
    BookingUpdate,
    BookingWarning,
    CampaignEpisodeOut,
    CampaignIn,
    CampaignOut,
    CampaignPacingOut,
    CampaignUpdate,
    SponsorIn,
    SponsorOut,
    SponsorUpdate,
    Stage,
    StageChangeOut,
    TransitionIn,
)

router = APIRouter(prefix="/v1", tags=["sponsorship"])
Search = Annotated[str | None, Query(max_length=200, description="Case-insensitive substring of the name.")]
DayBound = Annotated[str | None, Query(max_length=40)]


def _day(value: str | None, *, name: str, end: bool) -> date | None:
    """The day a ``from`` / ``to`` value stands for: a date is itself (a ``to`` date includes its
    day); a datetime with a zone is the UTC day it falls on, or for ``to`` (an exclusive instant) the
    UTC day of the instant just before it."""
    if value is None:
        return None
    if len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise Invalid(f"{name} must be a date (2026-11-24) or a datetime with a zone", parameter=name) from exc
    moment = parse_bound(value, name=name, end=end)
    assert moment is not None
    try:
        if end:
            moment -= timedelta(microseconds=1)
        return moment.astimezone(UTC).date()
    except OverflowError as exc:
        raise Invalid(f"{name} is out of range", parameter=name) from exc


def _campaign_out(campaign: Campaign) -> CampaignOut:
    out = CampaignOut.model_validate(campaign)
    out.next_stages = service.next_stages(campaign.stage)
    return out


def _booking_out(booking: Booking, warnings: list[BookingWarning], delivered: dict[uuid.UUID, int]) -> BookingOut:
    out = BookingOut.model_validate(booking)
    out.warnings = warnings
    out.delivered_impressions = delivered.get(booking.id, 0)
    return out


async def _delivered(principal: Principal, bookings: Sequence[Booking]) -> dict[uuid.UUID, int]:
    return await measurement.delivered_impressions(principal.session, bookings)


# --- sponsors ------------------------------------------------------------------------------------


@router.get("/sponsors", response_model=Page[SponsorOut], summary="List sponsors")
async def list_sponsors(
    principal: Annotated[Principal, requires("sponsors", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
    q: Search = None,
) -> Page[SponsorOut]:
    """The tenant's sponsors, newest first, optionally filtered by name."""
    sponsors, next_cursor = await service.list_sponsors(principal.session, limit=limit, cursor=cursor, q=q)
    return Page(items=[SponsorOut.model_validate(s) for s in sponsors], next_cursor=next_cursor)


@router.post("/sponsors", status_code=status.HTTP_201_CREATED, response_model=SponsorOut, summary="Create a sponsor")
async def create_sponsor(
    body: SponsorIn, principal: Annotated[Principal, requires("sponsors", "create")]
) -> SponsorOut:
    """A sponsor (advertiser): name, website and logo."""
    sponsor = await service.create_sponsor(principal.session, principal.tenant, principal.actor, body)
    return SponsorOut.model_validate(sponsor)


@router.get("/sponsors/{sponsor_id}", response_model=SponsorOut, summary="Get a sponsor")
async def get_sponsor(
    sponsor_id: uuid.UUID, principal: Annotated[Principal, requires("sponsors", "read")]
) -> SponsorOut:
    """One sponsor."""
    return SponsorOut.model_validate(await service.get_sponsor(principal.session, sponsor_id))


@router.patch("/sponsors/{sponsor_id}", response_model=SponsorOut, summary="Update a sponsor")
async def update_sponsor(
    sponsor_id: uuid.UUID, body: SponsorUpdate, principal: Annotated[Principal, requires("sponsors", "update")]
) -> SponsorOut:
    """Change the name, website or logo."""
    sponsor = await service.get_sponsor(principal.session, sponsor_id)
    return SponsorOut.model_validate(await service.update_sponsor(principal.session, principal.actor, sponsor, body))


@router.delete("/sponsors/{sponsor_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a sponsor")
async def delete_sponsor(
    sponsor_id: uuid.UUID, principal: Annotated[Principal, requires("sponsors", "delete")]
) -> Response:
    """Delete a sponsor without campaigns (409 naming how many it has otherwise)."""
    await service.delete_sponsor(
        principal.session, principal.actor, await service.get_sponsor(principal.session, sponsor_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- campaigns -----------------------------------------------------------------------------------


@router.get("/campaigns", response_model=Page[CampaignOut], summary="List campaigns")
async def list_campaigns(
    principal: Annotated[Principal, requires("campaigns", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
    stage: Annotated[Stage | None, Query(description="Only campaigns in this stage.")] = None,
    sponsor_id: Annotated[uuid.UUID | None, Query(description="Only this sponsor's campaigns.")] = None,
    podcast_id: Annotated[uuid.UUID | None, Query(description="Only campaigns with a live booking on it.")] = None,
    runs_from: Annotated[
        str | None, Query(alias="from", max_length=40, description="Running on or after this day.")
    ] = None,
    runs_to: Annotated[
        str | None, Query(alias="to", max_length=40, description="Running on or before this day (inclusive).")
    ] = None,
) -> Page[CampaignOut]:
    """The tenant's campaigns, newest first. `from` / `to` (dates, or datetimes with a zone, taken as
    their UTC day; both inclusive) keep campaigns whose period overlaps the range: the period is the
    campaign's `start_date`–`end_date`, a missing date taken from its live (not cancelled) bookings'
    flights, else open on that side; a campaign with neither dates nor live bookings matches no range."""
    campaigns, next_cursor = await service.list_campaigns(
        principal.session, limit=limit, cursor=cursor, stage=stage, sponsor_id=sponsor_id, podcast_id=podcast_id,
        runs_from=_day(runs_from, name="from", end=False), runs_to=_day(runs_to, name="to", end=True),
    )  # fmt: skip
    return Page(items=[_campaign_out(c) for c in campaigns], next_cursor=next_cursor)


@router.post("/campaigns", status_code=status.HTTP_201_CREATED, response_model=CampaignOut, summary="Create a campaign")
async def create_campaign(
    body: CampaignIn, principal: Annotated[Principal, requires("campaigns", "create")]
) -> CampaignOut:
    """A campaign, optionally for a sponsor (another tenant's answers 404), in stage `draft`.
    Announces `campaign.created`."""
    campaign = await service.create_campaign(principal.session, principal.tenant, principal.actor, body)
    return _campaign_out(campaign)


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, summary="Get a campaign")
async def get_campaign(
    campaign_id: uuid.UUID, principal: Annotated[Principal, requires("campaigns", "read")]
) -> CampaignOut:
    """One campaign, with the stages it may move to next."""
    return _campaign_out(await service.get_campaign(principal.session, campaign_id))


@router.patch("/campaigns/{campaign_id}", response_model=CampaignOut, summary="Update a campaign")
async def update_campaign(
    campaign_id: uuid.UUID, body: CampaignUpdate, principal: Annotated[Principal, requires("campaigns", "update")]
) -> CampaignOut:
    """Change the name, sponsor, description or dates. The stage changes only through
    `POST /v1/campaigns/{id}/transition` (sending `stage` here is a 422); new dates must still hold
    every live booking's flight (422)."""
    campaign = await service.get_campaign(principal.session, campaign_id, for_update=True)
    return _campaign_out(await service.update_campaign(principal.session, principal.actor, campaign, body))


@router.delete("/campaigns/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a campaign")
async def delete_campaign(
    campaign_id: uuid.UUID, principal: Annotated[Principal, requires("campaigns", "delete")]
) -> Response:
    """Delete a draft campaign with its bookings; any other stage answers 409 (cancel it instead)."""
    campaign = await service.get_campaign(principal.session, campaign_id, for_update=True)
    await service.delete_campaign(principal.session, principal.actor, campaign)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/campaigns/{campaign_id}/transition", response_model=CampaignOut, summary="Change a campaign's stage")
async def transition_campaign(
    campaign_id: uuid.UUID, body: TransitionIn, principal: Annotated[Principal, requires("campaigns", "update")]
) -> CampaignOut:
    """Move the campaign along its stage machine: draft → active; active ⇄ paused; active or paused →
    completed; draft, active or paused → cancelled. Completed and cancelled are final. An illegal
    change is a 409 problem with `from_stage`, `to_stage` and the `allowed` stages. Each change is kept
    in the history (who, when, from, to, reason) and announced as `campaign.stage_changed`."""
    campaign = await service.get_campaign(principal.session, campaign_id, for_update=True)
    campaign = await service.transition(principal.session, principal.actor, campaign, body.stage, body.reason)
    return _campaign_out(campaign)


@router.get("/campaigns/{campaign_id}/history", response_model=Page[StageChangeOut], summary="Stage history")
async def stage_history(
    campaign_id: uuid.UUID,
    principal: Annotated[Principal, requires("campaigns", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
) -> Page[StageChangeOut]:
    """Every stage the campaign entered, newest first: its creation (`from_stage` null) and each
    transition, with who made it, when and why."""
    await service.get_campaign(principal.session, campaign_id)
    changes, next_cursor = await service.stage_history(principal.session, campaign_id, limit=limit, cursor=cursor)
    return Page(items=[StageChangeOut.model_validate(c) for c in changes], next_cursor=next_cursor)


@router.get(
    "/campaigns/{campaign_id}/episodes", response_model=Page[CampaignEpisodeOut], summary="Where a campaign runs"
)
async def campaign_episodes(
    campaign_id: uuid.UUID,
    principal: Annotated[Principal, requires("bookings", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
) -> Page[CampaignEpisodeOut]:
    """The podcasts and episodes the campaign runs on, through its live (not cancelled) bookings,
    newest booking first: one row per booking, `episode_id` null for a booking on the whole podcast."""
    await service.get_campaign(principal.session, campaign_id)
    items, next_cursor = await service.campaign_episodes(principal.session, campaign_id, limit=limit, cursor=cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/campaigns/{campaign_id}/pacing", response_model=CampaignPacingOut, summary="Delivery pacing")
async def campaign_pacing(
    campaign_id: uuid.UUID, principal: Annotated[Principal, requires("campaigns", "read")]
) -> CampaignPacingOut:
    """Booked against delivered impressions of each live (not cancelled) booking and of the campaign,
    now: `elapsed` share of the flight (UTC days, inclusive), `expected_to_date` = round(booked ×
    elapsed), `projected` at the current pace, `pace` = delivered / expected and `status` (`ahead`
    above 110%, `behind` under 90%, else `on_track`; never `behind` in a flight's first 24 hours), with
    the spend so far (CPM on delivered impressions up to the booked ones, a flat fee earned evenly over
    the flight) in the bookings' currency."""
    campaign = await service.get_campaign(principal.session, campaign_id)
    return await pacing.campaign_pacing(principal.session, campaign)


# --- bookings ------------------------------------------------------------------------------------


@router.get("/campaigns/{campaign_id}/bookings", response_model=Page[BookingOut], summary="List a campaign's bookings")
async def list_bookings(
    campaign_id: uuid.UUID,
    principal: Annotated[Principal, requires("bookings", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
    booking_status: Annotated[BookingStatus | None, Query(alias="status", description="Only this status.")] = None,
    podcast_id: Annotated[uuid.UUID | None, Query(description="Only bookings on this podcast.")] = None,
) -> Page[BookingOut]:
    """The campaign's IO bookings, newest first, each with its inventory `warnings`."""
    await service.get_campaign(principal.session, campaign_id)
    bookings, next_cursor = await service.list_bookings(
        principal.session, campaign_id, limit=limit, cursor=cursor, status=booking_status, podcast_id=podcast_id
    )
    warnings = await service.inventory_warnings(principal.session, bookings)
    delivered = await _delivered(principal, bookings)
    return Page(items=[_booking_out(b, warnings.get(b.id, []), delivered) for b in bookings], next_cursor=next_cursor)


@router.post(
    "/campaigns/{campaign_id}/bookings",
    status_code=status.HTTP_201_CREATED,
    response_model=BookingOut,
    summary="Book an insertion order",
)
async def create_booking(
    campaign_id: uuid.UUID, body: BookingIn, principal: Annotated[Principal, requires("bookings", "create")]
) -> BookingOut:
    """An IO booking on a podcast (optionally one of its episodes; another's is a 422, another tenant's
    podcast or episode a 404): placement, ad format, `cpm` or `flat` pricing with `rate_minor` in
    integer minor units of an ISO 4217 `currency`, booked impressions and a flight inside the
    campaign's dates (422). `make_good_of` names the booking of this campaign it makes good. The
    answer's `warnings` list other live bookings of the same podcast placement over the same days."""
    campaign = await service.get_campaign(principal.session, campaign_id, for_update=True)
    booking, warnings = await service.create_booking(principal.session, principal.actor, campaign, body)
    return _booking_out(booking, warnings, await _delivered(principal, [booking]))


@router.get("/campaigns/{campaign_id}/bookings/{booking_id}", response_model=BookingOut, summary="Get a booking")
async def get_booking(
    campaign_id: uuid.UUID, booking_id: uuid.UUID, principal: Annotated[Principal, requires("bookings", "read")]
) -> BookingOut:
    """One booking of the campaign, with its inventory `warnings`."""
    booking = await service.get_booking(principal.session, campaign_id, booking_id)
    warnings = await service.inventory_warnings(principal.session, [booking])
    return _booking_out(booking, warnings.get(booking.id, []), await _delivered(principal, [booking]))


@router.patch("/campaigns/{campaign_id}/bookings/{booking_id}", response_model=BookingOut, summary="Update a booking")
async def update_booking(
    campaign_id: uuid.UUID,
    booking_id: uuid.UUID,
    body: BookingUpdate,
    principal: Annotated[Principal, requires("bookings", "update")],
) -> BookingOut:
    """Change any of the booking's fields, status included; the result is validated as on creation."""
    campaign = await service.get_campaign(principal.session, campaign_id, for_update=True)
    booking = await service.get_booking(principal.session, campaign_id, booking_id)
    booking, warnings = await service.update_booking(principal.session, principal.actor, campaign, booking, body)
    return _booking_out(booking, warnings, await _delivered(principal, [booking]))


@router.delete(
    "/campaigns/{campaign_id}/bookings/{booking_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a booking"
)
async def delete_booking(
    campaign_id: uuid.UUID, booking_id: uuid.UUID, principal: Annotated[Principal, requires("bookings", "delete")]
) -> Response:
    """Delete a pending or cancelled booking; one that is confirmed or running answers 409 (cancel it)."""
    booking = await service.get_booking(principal.session, campaign_id, booking_id)
    await service.delete_booking(principal.session, principal.actor, booking)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
