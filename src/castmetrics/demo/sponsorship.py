"""The demo network's sponsorship book: sponsors, campaigns in every stage, bookings, and their sizing
against the demo's listening so that pacing tells a story — all through sponsorship's services."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.auth.principal import Actor, TenantRef
from castmetrics.catalog.models import Episode, Podcast
from castmetrics.measurement import service as measurement
from castmetrics.sponsorship.models import Booking, Campaign, Sponsor
from castmetrics.sponsorship.schemas import BookingIn, BookingUpdate, CampaignIn, SponsorIn
from castmetrics.sponsorship.service import (
    CANCELLED,
    create_booking,
    create_campaign,
    create_sponsor,
    transition,
    update_booking,
)


async def seed_book(session: AsyncSession, tenant: TenantRef, actor: Actor, *, now: datetime | None = None) -> None:
    """The demo network's sponsorship book: sponsors, a campaign in every stage with the history that
    led there, and bookings across its podcasts — through the same services the API uses; flights are
    placed around ``now``'s UTC day (default: the current time). Skipped when the tenant already has
    sponsors, so seeding twice changes nothing."""
    if await session.scalar(select(exists().where(Sponsor.tenant_id == tenant.id))):
        return
    podcasts = list((await session.scalars(select(Podcast).order_by(Podcast.name))).all())
    if not podcasts:
        return
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    sponsors = [
        await create_sponsor(session, tenant, actor, SponsorIn.model_validate(values))
        for values in (
            {"name": "Brightline Mattresses", "website_url": "https://brightline.example.com"},
            {"name": "Quillstack Notes", "website_url": "https://quillstack.example.com"},
            {
                "name": "Northwind Coffee",
                "website_url": "https://northwind.example.com",
                "logo_url": "https://northwind.example.com/logo.png",
            },
        )  # fmt: skip
    ]
    # (name, sponsor, days from today to start and end, the stages it went through, with reasons).
    # Brightline's two campaigns overlap for the last two weeks: for the demo's attribution the host
    # reads that started first are its awareness campaign and the holiday push its direct response
    # (whose ads mostly play later in an episode), so the attribution models tell different stories.
    plans: list[tuple[str, Sponsor | None, int, int, list[tuple[str, str | None]]]] = [
        ("Spring launch (draft)", sponsors[1], 30, 90, []),
        ("Always-on host reads", sponsors[0], -45, 45, [("active", "IO signed")]),
        ("Holiday push", sponsors[0], -15, 30, [("active", "IO signed"), ("paused", "creative under review")]),
        ("Back to school", sponsors[2], -120, -30, [("active", None), ("completed", "flight delivered")]),
        ("Podcast pilot", None, -60, 0, [("active", None), ("paused", "budget hold"), ("cancelled", "budget cut")]),
    ]
    episodes_by_podcast: dict[uuid.UUID, list[Episode]] = {}
    for podcast in podcasts:
        episodes_by_podcast[podcast.id] = list(
            (await session.scalars(select(Episode).where(Episode.podcast_id == podcast.id).order_by(Episode.id))).all()
        )
    for n, (name, sponsor, start_in, end_in, stages) in enumerate(plans):
        start, end = today + timedelta(days=start_in), today + timedelta(days=end_in)
        campaign = await create_campaign(
            session, tenant, actor,
            CampaignIn(name=name, sponsor_id=sponsor.id if sponsor else None, start_date=start, end_date=end,
                       description=f"Demo campaign {n + 1}."),
        )  # fmt: skip
        first: Booking | None = None
        for k, podcast in enumerate(podcasts):
            episodes = episodes_by_podcast[podcast.id]
            booking, _ = await create_booking(
                session, actor, campaign,
                BookingIn.model_validate({
                    "podcast_id": podcast.id,
                    "episode_id": episodes[k % len(episodes)].id if episodes and k % 2 else None,
                    "placement": ("pre_roll", "mid_roll", "post_roll")[(n + k) % 3],
                    "ad_format": ("host_read", "pre_recorded", "programmatic")[k % 3],
                    "pricing_model": "cpm" if k % 2 == 0 else "flat",
                    "rate_minor": 2500 if k % 2 == 0 else 150_000,
                    "currency": "USD",
                    "booked_impressions": 50_000 * (k + 1),
                    "flight_start": start,
                    "flight_end": end,
                    "status": "confirmed" if stages else "pending",
                    "promo_code": f"DEMO{n + 1}{k + 1}",
                    "vanity_url": f"https://example.com/demo{n + 1}",
                }),
            )  # fmt: skip
            first = first or booking
        if name == "Back to school" and first is not None:  # under-delivered: a make-good after the flight
            await create_booking(
                session, actor, campaign,
                BookingIn(
                    podcast_id=first.podcast_id, placement="post_roll", ad_format="host_read", pricing_model="flat",
                    rate_minor=0, currency="USD", booked_impressions=10_000, flight_start=end - timedelta(days=7),
                    flight_end=end, status="delivered", make_good_of=first.id,
                ),
            )  # fmt: skip
        for stage, reason in stages:
            await transition(session, actor, campaign, stage, reason)


# Pace against even delivery the demo's running bookings are booked for, by their rank in delivered
# downloads within their campaign: clearly ahead, clearly behind, on track (pacing's thresholds are
# ±10 %; booking in round figures moves a pace by at most 5 %).
DEMO_PACES = (1.6, 0.55, 1.0)


def _round_figure(value: float) -> int:
    """``value`` to two significant digits, as an IO books impressions (12,345 → 12,000), at least 1."""
    if value < 1:
        return 1
    step = int(10 ** max(0, len(str(int(value))) - 2))
    return max(1, round(value / step) * step)


async def size_bookings(session: AsyncSession, actor: Actor, *, now: datetime | None = None) -> int:
    """Book the demo's running campaigns (active or paused) against the downloads the demo listening
    delivered, so that their pacing tells a story: in each campaign the in-flight booking that delivered
    most is ahead of even delivery, the next behind, the next on track (``DEMO_PACES``). Only bookings
    never changed since they were seeded (``updated_at = created_at``) that have downloads in their
    flight are sized, through ``update_booking``; so running it again changes nothing, and a booking
    someone edited keeps their figures. Answers how many were sized."""
    moment = now or datetime.now(UTC)
    today = moment.astimezone(UTC).date()
    rows = await session.execute(
        select(Booking, Campaign)
        .join(Campaign, and_(Campaign.tenant_id == Booking.tenant_id, Campaign.id == Booking.campaign_id))
        .where(
            Campaign.stage.in_(("active", "paused")),
            Booking.status != CANCELLED,
            Booking.flight_start <= today,
            Booking.flight_end >= today,
            Booking.updated_at == Booking.created_at,
        )
        .order_by(Campaign.id, Booking.id)
    )
    found = [(booking, campaign) for booking, campaign in rows]
    delivered = await measurement.delivered_impressions(session, [booking for booking, _ in found])
    by_campaign: dict[uuid.UUID, list[tuple[Booking, Campaign]]] = {}
    for booking, campaign in found:
        if delivered.get(booking.id, 0) > 0:
            by_campaign.setdefault(campaign.id, []).append((booking, campaign))
    sized = 0
    for bookings in by_campaign.values():
        bookings.sort(key=lambda pair: (-delivered[pair[0].id], str(pair[0].id)))
        for rank, (booking, campaign) in enumerate(bookings):
            start = datetime.combine(booking.flight_start, datetime.min.time(), UTC)
            flight = datetime.combine(booking.flight_end + timedelta(days=1), datetime.min.time(), UTC) - start
            elapsed = min(1.0, max((moment - start) / flight, 0.001))  # the flight's share passed, as pacing counts
            booked = _round_figure(delivered[booking.id] / (elapsed * DEMO_PACES[rank % len(DEMO_PACES)]))
            await update_booking(session, actor, campaign, booking, BookingUpdate(booked_impressions=booked))
            sized += 1
    return sized
