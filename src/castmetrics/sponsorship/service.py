"""Sponsors, campaigns and their stage machine, IO bookings with the inventory check."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from castmetrics.audit import service as audit
from castmetrics.auth.principal import Actor, TenantRef
from castmetrics.catalog import service as catalog
from castmetrics.changes import record_change
from castmetrics.db.repository import Repository
from castmetrics.db.search import contains
from castmetrics.errors import Conflict, Invalid
from castmetrics.sponsorship.models import Booking, Campaign, CampaignStageChange, Sponsor
from castmetrics.sponsorship.schemas import (
    BookingIn,
    BookingUpdate,
    BookingWarning,
    CampaignEpisodeOut,
    CampaignIn,
    CampaignUpdate,
    SponsorIn,
    SponsorUpdate,
    Stage,
)

SPONSOR_FIELDS = ("name", "website_url", "logo_url")
CAMPAIGN_FIELDS = ("name", "sponsor_id", "description", "start_date", "end_date", "lookback_days")
BOOKING_FIELDS = (
    "podcast_id", "episode_id", "placement", "ad_format", "pricing_model", "rate_minor", "currency",
    "booked_impressions", "flight_start", "flight_end", "status", "promo_code", "vanity_url", "make_good_of",
)  # fmt: skip
# Fields a booking always has: a PATCH may change them, never clear them.
BOOKING_REQUIRED = (
    "podcast_id", "placement", "pricing_model", "rate_minor", "currency", "booked_impressions", "flight_start",
    "flight_end", "status",
)  # fmt: skip

# The campaign stage machine: where each stage may go. Completed and cancelled are final.
STAGES = ("draft", "active", "paused", "completed", "cancelled")
TRANSITIONS: dict[str, tuple[Stage, ...]] = {
    "draft": ("active", "cancelled"),
    "active": ("paused", "completed", "cancelled"),
    "paused": ("active", "completed", "cancelled"),
    "completed": (),
    "cancelled": (),
}
# A booking that is cancelled, or whose campaign is, holds no inventory and no longer runs.
CANCELLED = "cancelled"
# Bookings in these states never ran: deleting them loses nothing (others are cancelled instead).
DELETABLE_BOOKING_STATUSES = ("pending", "cancelled")

_sponsors = Repository(Sponsor, moment=Sponsor.created_at)
_campaigns = Repository(Campaign, moment=Campaign.created_at)
_stage_changes = Repository(CampaignStageChange, moment=CampaignStageChange.changed_at)
_bookings = Repository(Booking, moment=Booking.created_at)


# --- sponsors ------------------------------------------------------------------------------------


async def create_sponsor(session: AsyncSession, tenant: TenantRef, actor: Actor, data: SponsorIn) -> Sponsor:
    sponsor = Sponsor(tenant_id=tenant.id, id=uuid.uuid4(), **data.model_dump())
    session.add(sponsor)
    await session.flush()
    await session.refresh(sponsor)
    await audit.record(
        session, tenant_id=tenant.id, actor=actor, action="create", entity_type="sponsor", entity_id=sponsor.id,
        after=audit.snapshot(sponsor, SPONSOR_FIELDS),
    )  # fmt: skip
    return sponsor


async def get_sponsor(session: AsyncSession, sponsor_id: uuid.UUID) -> Sponsor:
    return await _sponsors.get(session, sponsor_id, missing="no such sponsor")


async def list_sponsors(
    session: AsyncSession, *, limit: int, cursor: str | None, q: str | None = None
) -> tuple[Sequence[Sponsor], str | None]:
    statement = select(Sponsor)
    if q:
        statement = statement.where(contains(Sponsor.name, q))
    return await _sponsors.page(session, statement, limit=limit, cursor=cursor)


async def update_sponsor(session: AsyncSession, actor: Actor, sponsor: Sponsor, data: SponsorUpdate) -> Sponsor:
    before = audit.snapshot(sponsor, SPONSOR_FIELDS)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise Invalid("name cannot be null", field="name")
    for field, value in changes.items():
        setattr(sponsor, field, value)
    await session.flush()
    await session.refresh(sponsor)
    await audit.record(
        session, tenant_id=sponsor.tenant_id, actor=actor, action="update", entity_type="sponsor",
        entity_id=sponsor.id, before=before, after=audit.snapshot(sponsor, SPONSOR_FIELDS),
    )  # fmt: skip
    return sponsor


async def delete_sponsor(session: AsyncSession, actor: Actor, sponsor: Sponsor) -> None:
    """Delete a sponsor that has no campaigns (409 otherwise: its campaigns would lose their sponsor,
    and attribution groups touchpoints by sponsor)."""
    campaigns = await session.scalar(select(func.count()).where(Campaign.sponsor_id == sponsor.id))
    if campaigns:
        raise Conflict(
            f"the sponsor has {campaigns} campaign(s): delete them or move them to another sponsor first",
            campaigns=campaigns,
        )
    await session.delete(sponsor)
    await session.flush()
    await audit.record(
        session, tenant_id=sponsor.tenant_id, actor=actor, action="delete", entity_type="sponsor",
        entity_id=sponsor.id, before={"name": sponsor.name},
    )  # fmt: skip


# --- campaigns -----------------------------------------------------------------------------------


def next_stages(stage: str) -> list[Stage]:
    return list(TRANSITIONS[stage])


async def _record_stage(
    session: AsyncSession, campaign: Campaign, actor: Actor, from_stage: str | None, reason: str | None
) -> CampaignStageChange:
    """The history row of the stage the campaign just entered, at its ``stage_changed_at``."""
    change = CampaignStageChange(
        tenant_id=campaign.tenant_id, id=uuid.uuid4(), campaign_id=campaign.id, from_stage=from_stage,
        to_stage=campaign.stage, reason=reason, actor_type=actor.type, actor_id=actor.id,
        changed_at=campaign.stage_changed_at,
    )  # fmt: skip
    session.add(change)
    await session.flush()
    await session.refresh(change)
    return change


async def create_campaign(session: AsyncSession, tenant: TenantRef, actor: Actor, data: CampaignIn) -> Campaign:
    """A campaign in ``draft``: its creation is the first row of its stage history, and
    ``campaign.created`` goes out through the outbox with it."""
    if data.sponsor_id is not None:
        await get_sponsor(session, data.sponsor_id)
    campaign = Campaign(tenant_id=tenant.id, id=uuid.uuid4(), stage="draft", **data.model_dump())
    session.add(campaign)
    await session.flush()
    await session.refresh(campaign)
    await _record_stage(session, campaign, actor, None, None)
    await record_change(
        session, tenant_id=tenant.id, actor=actor, action="create", entity_type="campaign", entity_id=campaign.id,
        after={**audit.snapshot(campaign, CAMPAIGN_FIELDS), "stage": campaign.stage},
        event_type="campaign.created",
        payload={
            "campaign_id": str(campaign.id),
            "name": campaign.name,
            "sponsor_id": audit.jsonable(campaign.sponsor_id),
            "stage": campaign.stage,
        },
    )  # fmt: skip
    return campaign


async def get_campaign(session: AsyncSession, campaign_id: uuid.UUID, *, for_update: bool = False) -> Campaign:
    """One campaign; ``for_update`` locks its row until the transaction ends (stage changes)."""
    return await _campaigns.get(session, campaign_id, missing="no such campaign", for_update=for_update)


def _live_bookings(campaign_id: Any) -> Select[Any]:
    return select(Booking).where(Booking.campaign_id == campaign_id, Booking.status != CANCELLED)


async def list_campaigns(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    stage: str | None = None,
    sponsor_id: uuid.UUID | None = None,
    podcast_id: uuid.UUID | None = None,
    runs_from: date | None = None,
    runs_to: date | None = None,
) -> tuple[Sequence[Campaign], str | None]:
    """The tenant's campaigns, newest first, narrowed by stage, sponsor, a podcast they have a live
    booking on, and a range of days their period overlaps. The period runs from the campaign's
    ``start_date`` to its ``end_date``; a missing one is taken from its live bookings (earliest flight
    start, latest flight end), and one still missing leaves that side open. A campaign with neither
    dates nor live bookings has no period and matches no range."""
    statement: Select[Any] = select(Campaign)
    if stage is not None:
        statement = statement.where(Campaign.stage == stage)
    if sponsor_id is not None:
        statement = statement.where(Campaign.sponsor_id == sponsor_id)
    if podcast_id is not None:
        statement = statement.where(
            _live_bookings(Campaign.id).where(Booking.podcast_id == podcast_id).with_only_columns(Booking.id).exists()
        )
    if runs_from is not None or runs_to is not None:
        statement = statement.where(
            or_(
                Campaign.start_date.is_not(None),
                Campaign.end_date.is_not(None),
                _live_bookings(Campaign.id).with_only_columns(Booking.id).exists(),
            )
        )
    if runs_to is not None:
        first_flight = _live_bookings(Campaign.id).with_only_columns(func.min(Booking.flight_start)).scalar_subquery()
        starts = func.coalesce(Campaign.start_date, first_flight)
        statement = statement.where(or_(starts.is_(None), starts <= runs_to))
    if runs_from is not None:
        last_flight = _live_bookings(Campaign.id).with_only_columns(func.max(Booking.flight_end)).scalar_subquery()
        ends = func.coalesce(Campaign.end_date, last_flight)
        statement = statement.where(or_(ends.is_(None), ends >= runs_from))
    return await _campaigns.page(session, statement, limit=limit, cursor=cursor)


async def update_campaign(session: AsyncSession, actor: Actor, campaign: Campaign, data: CampaignUpdate) -> Campaign:
    """Change name, sponsor, description or dates (never the stage). New dates must still hold every
    live booking's flight (422 naming how many would fall outside)."""
    before = audit.snapshot(campaign, CAMPAIGN_FIELDS)
    changes = data.model_dump(exclude_unset=True)
    for field in ("name", "lookback_days"):
        if field in changes and changes[field] is None:
            raise Invalid(f"{field} cannot be null", field=field)
    if changes.get("sponsor_id") is not None:
        await get_sponsor(session, changes["sponsor_id"])
    start = changes.get("start_date", campaign.start_date)
    end = changes.get("end_date", campaign.end_date)
    if start is not None and end is not None and end < start:
        raise Invalid("end_date is before start_date", field="end_date")
    if "start_date" in changes or "end_date" in changes:
        outside = [Booking.flight_start < start] if start is not None else []
        outside += [Booking.flight_end > end] if end is not None else []
        if outside:
            count = await session.scalar(
                _live_bookings(campaign.id).with_only_columns(func.count()).where(or_(*outside))
            )
            if count:
                raise Invalid(
                    f"{count} live booking(s) of this campaign fly outside these dates: move or cancel them first",
                    field="start_date" if "start_date" in changes else "end_date",
                    bookings_outside=count,
                )
    for field, value in changes.items():
        setattr(campaign, field, value)
    await session.flush()
    await session.refresh(campaign)
    await audit.record(
        session, tenant_id=campaign.tenant_id, actor=actor, action="update", entity_type="campaign",
        entity_id=campaign.id, before=before, after=audit.snapshot(campaign, CAMPAIGN_FIELDS),
    )  # fmt: skip
    return campaign


async def delete_campaign(session: AsyncSession, actor: Actor, campaign: Campaign) -> None:
    """Delete a draft campaign with its bookings and history. A campaign that went live is part of
    the record (pacing, attribution, spend): it is cancelled or completed, never deleted (409)."""
    if campaign.stage != "draft":
        raise Conflict(
            f"only a draft campaign can be deleted; this one is {campaign.stage}"
            + (": cancel it instead" if TRANSITIONS[campaign.stage] else ""),
            stage=campaign.stage,
        )
    await session.delete(campaign)
    await session.flush()
    await audit.record(
        session, tenant_id=campaign.tenant_id, actor=actor, action="delete", entity_type="campaign",
        entity_id=campaign.id, before={"name": campaign.name, "stage": campaign.stage},
    )  # fmt: skip


async def transition(
    session: AsyncSession, actor: Actor, campaign: Campaign, stage: str, reason: str | None = None
) -> Campaign:
    """Move the campaign to ``stage`` along the stage machine (409 naming the allowed stages
    otherwise), keeping the change in its history and announcing ``campaign.stage_changed`` in the
    same transaction. Lock the campaign first (``get_campaign(..., for_update=True)``) so two
    concurrent changes cannot both start from the same stage."""
    current = campaign.stage
    allowed = TRANSITIONS[current]
    if stage not in allowed:
        detail = (
            f"a {current} campaign is final: its stage cannot change"
            if not allowed
            else f"a campaign cannot go from {current} to {stage}; from {current} it can go to {' or '.join(allowed)}"
        )
        raise Conflict(detail, reason="illegal_transition", from_stage=current, to_stage=stage, allowed=list(allowed))
    reason = reason or None
    campaign.stage = stage
    changed_at: datetime = (await session.execute(select(func.clock_timestamp()))).scalar_one()
    campaign.stage_changed_at = changed_at
    await session.flush()
    await session.refresh(campaign)
    change = await _record_stage(session, campaign, actor, current, reason)
    await record_change(
        session, tenant_id=campaign.tenant_id, actor=actor, action="transition", entity_type="campaign",
        entity_id=campaign.id, before={"stage": current}, after={"stage": stage, "reason": reason},
        event_type="campaign.stage_changed",
        payload={
            "campaign_id": str(campaign.id),
            "sponsor_id": audit.jsonable(campaign.sponsor_id),
            "from": current,
            "to": stage,
            "reason": reason,
            "changed_at": change.changed_at.isoformat(),
            "change_id": str(change.id),
        },
    )  # fmt: skip
    return campaign


async def stage_history(
    session: AsyncSession, campaign_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[Sequence[CampaignStageChange], str | None]:
    statement = select(CampaignStageChange).where(CampaignStageChange.campaign_id == campaign_id)
    return await _stage_changes.page(session, statement, limit=limit, cursor=cursor)


# --- bookings ------------------------------------------------------------------------------------


async def _check_inventory_target(session: AsyncSession, podcast_id: uuid.UUID, episode_id: uuid.UUID | None) -> None:
    """The podcast (and episode) exist for this tenant (404 otherwise, as for any other tenant's), and
    the episode is one of the podcast's (422)."""
    await catalog.get_podcast(session, podcast_id)
    if episode_id is not None:
        episode = await catalog.get_episode(session, episode_id)
        if episode.podcast_id != podcast_id:
            raise Invalid("the episode belongs to another podcast than the one booked", field="episode_id")


def _check_flight(campaign: Campaign, flight_start: date, flight_end: date) -> None:
    if flight_end < flight_start:
        raise Invalid("flight_end is before flight_start", field="flight_end")
    if campaign.start_date is not None and flight_start < campaign.start_date:
        raise Invalid(
            f"the flight starts before the campaign does ({campaign.start_date.isoformat()})", field="flight_start"
        )
    if campaign.end_date is not None and flight_end > campaign.end_date:
        raise Invalid(f"the flight ends after the campaign does ({campaign.end_date.isoformat()})", field="flight_end")


async def _check_make_good(
    session: AsyncSession, campaign: Campaign, make_good_of: uuid.UUID, booking_id: uuid.UUID | None = None
) -> None:
    """A make-good points at an original booking of the same campaign: not itself, not another
    campaign's booking, not a make-good (one level, so make-goods never form a cycle)."""
    if make_good_of == booking_id:
        raise Invalid("a booking cannot make itself good", field="make_good_of")
    original = await _bookings.get(session, make_good_of, missing="no such booking to make good")
    if original.campaign_id != campaign.id:
        raise Invalid("a make-good must point at a booking of the same campaign", field="make_good_of")
    if original.make_good_of is not None:
        raise Invalid("that booking is itself a make-good: point at the booking it makes good", field="make_good_of")
    if booking_id is not None:
        has_make_goods = await session.scalar(select(exists().where(Booking.make_good_of == booking_id)))
        if has_make_goods:
            raise Invalid("this booking has make-goods of its own, so it cannot be a make-good", field="make_good_of")


async def create_booking(
    session: AsyncSession, actor: Actor, campaign: Campaign, data: BookingIn
) -> tuple[Booking, list[BookingWarning]]:
    """An IO booking of the campaign, with the inventory warnings it raises (the same podcast
    placement already booked over some of its days). A cancelled campaign takes no new bookings."""
    if campaign.stage == CANCELLED:
        raise Conflict("the campaign is cancelled: it takes no new bookings", stage=campaign.stage)
    await _check_inventory_target(session, data.podcast_id, data.episode_id)
    _check_flight(campaign, data.flight_start, data.flight_end)
    if data.make_good_of is not None:
        await _check_make_good(session, campaign, data.make_good_of)
    booking = Booking(tenant_id=campaign.tenant_id, id=uuid.uuid4(), campaign_id=campaign.id, **data.model_dump())
    session.add(booking)
    await session.flush()
    await session.refresh(booking)
    await audit.record(
        session, tenant_id=booking.tenant_id, actor=actor, action="create", entity_type="booking",
        entity_id=booking.id, after={"campaign_id": str(campaign.id), **audit.snapshot(booking, BOOKING_FIELDS)},
    )  # fmt: skip
    warnings = await inventory_warnings(session, [booking])
    return booking, warnings.get(booking.id, [])


async def get_booking(session: AsyncSession, campaign_id: uuid.UUID, booking_id: uuid.UUID) -> Booking:
    return await _bookings.get(
        session, booking_id, Booking.campaign_id == campaign_id, missing="no such booking in this campaign"
    )


async def list_bookings(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    podcast_id: uuid.UUID | None = None,
) -> tuple[Sequence[Booking], str | None]:
    statement: Select[Any] = select(Booking).where(Booking.campaign_id == campaign_id)
    if status is not None:
        statement = statement.where(Booking.status == status)
    if podcast_id is not None:
        statement = statement.where(Booking.podcast_id == podcast_id)
    return await _bookings.page(session, statement, limit=limit, cursor=cursor)


async def update_booking(
    session: AsyncSession, actor: Actor, campaign: Campaign, booking: Booking, data: BookingUpdate
) -> tuple[Booking, list[BookingWarning]]:
    """Change any of the booking's fields; the result is checked as a whole, as on creation."""
    before = audit.snapshot(booking, BOOKING_FIELDS)
    changes = data.model_dump(exclude_unset=True)
    for field in BOOKING_REQUIRED:
        if field in changes and changes[field] is None:
            raise Invalid(f"{field} cannot be null", field=field)
    merged = {**{f: getattr(booking, f) for f in BOOKING_FIELDS}, **changes}
    if "podcast_id" in changes or "episode_id" in changes:
        await _check_inventory_target(session, merged["podcast_id"], merged["episode_id"])
    if merged["status"] != CANCELLED:
        _check_flight(campaign, merged["flight_start"], merged["flight_end"])
    elif merged["flight_end"] < merged["flight_start"]:
        raise Invalid("flight_end is before flight_start", field="flight_end")
    if changes.get("make_good_of") is not None:
        await _check_make_good(session, campaign, changes["make_good_of"], booking.id)
    for field, value in changes.items():
        setattr(booking, field, value)
    await session.flush()
    await session.refresh(booking)
    await audit.record(
        session, tenant_id=booking.tenant_id, actor=actor, action="update", entity_type="booking",
        entity_id=booking.id, before=before, after=audit.snapshot(booking, BOOKING_FIELDS),
    )  # fmt: skip
    warnings = await inventory_warnings(session, [booking])
    return booking, warnings.get(booking.id, [])


async def delete_booking(session: AsyncSession, actor: Actor, booking: Booking) -> None:
    """Delete a booking that never ran (pending or cancelled); one that is confirmed, delivering or
    delivered is cancelled instead (409). Its make-goods stay, as bookings of their own."""
    if booking.status not in DELETABLE_BOOKING_STATUSES:
        raise Conflict(
            f"a {booking.status} booking cannot be deleted: set its status to cancelled instead",
            booking_status=booking.status,
        )
    # Its make-goods lose the link (the key's ON DELETE SET NULL, done here too: on Citus the key cannot).
    await session.execute(
        text("UPDATE bookings SET make_good_of = NULL WHERE tenant_id = :t AND campaign_id = :c AND make_good_of = :b"),
        {"t": booking.tenant_id, "c": booking.campaign_id, "b": booking.id},
    )
    await session.delete(booking)
    await session.flush()
    await audit.record(
        session, tenant_id=booking.tenant_id, actor=actor, action="delete", entity_type="booking",
        entity_id=booking.id, before=audit.snapshot(booking, BOOKING_FIELDS),
    )  # fmt: skip


async def inventory_warnings(
    session: AsyncSession, bookings: Sequence[Booking]
) -> dict[uuid.UUID, list[BookingWarning]]:
    """For each live booking, the other live bookings (any campaign) of the same podcast and
    placement whose flights share at least one day with it. Two bookings of different named episodes
    do not compete; a booking on the whole podcast competes with every one. One query for the lot."""
    live = [b.id for b in bookings if b.status != CANCELLED]
    if not live:
        return {}
    other = aliased(Booking)
    own_campaign = aliased(Campaign)
    other_campaign = aliased(Campaign)
    overlap_start = func.greatest(Booking.flight_start, other.flight_start)
    overlap_end = func.least(Booking.flight_end, other.flight_end)
    statement = (
        select(Booking.id, Booking.placement, other.id, other.campaign_id, overlap_start, overlap_end)
        .join(own_campaign, and_(own_campaign.tenant_id == Booking.tenant_id, own_campaign.id == Booking.campaign_id))
        .join(
            other,
            and_(
                other.tenant_id == Booking.tenant_id,
                other.podcast_id == Booking.podcast_id,
                other.placement == Booking.placement,
                other.id != Booking.id,
                other.status != CANCELLED,
                other.flight_start <= Booking.flight_end,
                other.flight_end >= Booking.flight_start,
                or_(Booking.episode_id.is_(None), other.episode_id.is_(None), other.episode_id == Booking.episode_id),
            ),
        )
        .join(
            other_campaign,
            and_(other_campaign.tenant_id == other.tenant_id, other_campaign.id == other.campaign_id),
        )
        .where(Booking.id.in_(live), own_campaign.stage != CANCELLED, other_campaign.stage != CANCELLED)
        .order_by(Booking.id, overlap_start, other.id)
    )
    found: dict[uuid.UUID, list[BookingWarning]] = {}
    for booking_id, placement, other_id, other_campaign_id, start, end in await session.execute(statement):
        found.setdefault(booking_id, []).append(
            BookingWarning(
                code="inventory_overlap",
                detail=f"this podcast's {placement} is also booked from {start.isoformat()} to "
                f"{end.isoformat()} by booking {other_id}",
                booking_id=other_id,
                campaign_id=other_campaign_id,
                overlap_start=start,
                overlap_end=end,
            )
        )
    return found


async def campaign_episodes(
    session: AsyncSession, campaign_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[CampaignEpisodeOut], str | None]:
    """Where the campaign runs: each live booking as the seed's ``campaign_episodes`` row, with the
    podcast's name and the episode's title (null for a booking on the whole podcast)."""
    bookings, next_cursor = await _bookings.page(session, _live_bookings(campaign_id), limit=limit, cursor=cursor)
    if not bookings:
        return [], next_cursor
    # Names for the page in one read of the catalog's tables (set-based, rather than one call each).
    podcast_names, episode_titles = await catalog.names(
        session, (b.podcast_id for b in bookings), (b.episode_id for b in bookings if b.episode_id is not None)
    )
    items = [
        CampaignEpisodeOut(
            booking_id=b.id,
            podcast_id=b.podcast_id,
            podcast_name=podcast_names.get(b.podcast_id, ""),
            episode_id=b.episode_id,
            episode_title=episode_titles.get(b.episode_id) if b.episode_id else None,
            placement=b.placement,
            flight_start=b.flight_start,
            flight_end=b.flight_end,
            status=b.status,
        )
        for b in bookings
    ]
    return items, next_cursor
