"""Delivery pacing of IO bookings: delivered against even delivery over the flight, and the behind alert.

Definitions (docs/api.md "Pacing"):

* A flight covers the UTC days ``flight_start`` to ``flight_end`` inclusive: from 00:00 UTC of the first
  day to 24:00 UTC of the last. ``elapsed`` is the fraction of that time passed at ``now``, clamped to
  0..1 and continuous (a day under way counts partially). ``phase`` is ``upcoming`` before the flight,
  ``in_flight`` during it and ``ended`` after it.
* ``expected_to_date = round(booked × elapsed)`` (even delivery over the flight);
  ``projected = round(delivered / elapsed)`` in flight (0 at its very start), ``delivered`` once ended,
  0 before; ``pace = delivered / expected_to_date`` (null while expected is 0). Counts round half up.
* ``status``: ``ahead`` when delivered > expected × 1.10, ``behind`` when delivered < expected × 0.90,
  else ``on_track`` — with ``expected`` the rounded ``expected_to_date`` the answer shows, so the status
  always agrees with ``pace``. Never ``behind`` before 24 hours of the flight have passed (too early to
  judge), and ``on_track`` before the flight.
* Spend so far: CPM ``rate_minor × min(delivered, booked) / 1000``; flat ``rate_minor × elapsed`` (the
  fee earned evenly over the flight, the whole fee once it ended).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import and_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics import money
from castmetrics.measurement import service as measurement
from castmetrics.outbox import service as outbox
from castmetrics.sponsorship.models import Booking, Campaign
from castmetrics.sponsorship.schemas import BookingPacing, CampaignPacingOut, PacingPhase, PacingStatus
from castmetrics.sponsorship.service import CANCELLED

AHEAD_ABOVE = Fraction(110, 100)
BEHIND_UNDER = Fraction(90, 100)
# A booking is not judged behind before its flight has run this long: one quiet morning is no trend.
GRACE = timedelta(hours=24)
BEHIND_EVENT = "booking.pacing_behind"


def _round(value: Fraction) -> int:
    """Half up (for the non-negative amounts here): 2.5 impressions expected are 3, not banker's 2."""
    return int((value + Fraction(1, 2)) // 1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _elapsed(flight_start: date, flight_end: date, now: datetime) -> Fraction:
    """The fraction of the flight's time passed at ``now``, exact and clamped to 0..1."""
    start, end = _midnight(flight_start), _midnight(flight_end + timedelta(days=1))
    passed = Fraction((now - start) // timedelta(microseconds=1), (end - start) // timedelta(microseconds=1))
    return min(max(passed, Fraction(0)), Fraction(1))


def _phase(flight_start: date, flight_end: date, now: datetime) -> PacingPhase:
    if now < _midnight(flight_start):
        return "upcoming"
    if now >= _midnight(flight_end + timedelta(days=1)):
        return "ended"
    return "in_flight"


def _status(delivered: int, expected: int) -> PacingStatus:
    if delivered > expected * AHEAD_ABOVE:
        return "ahead"
    if delivered < expected * BEHIND_UNDER:
        return "behind"
    return "on_track"


def _pace(delivered: int, expected: int) -> float | None:
    return delivered / expected if expected else None


def _spend_minor(booking: Booking, delivered: int, elapsed: Fraction) -> Fraction:
    """Exact spend so far in minor units (a CPM share may be a fraction of one)."""
    if booking.pricing_model == "flat":
        return booking.rate_minor * elapsed
    return Fraction(booking.rate_minor * min(delivered, booking.booked_impressions), 1000)


def _booking_pacing(booking: Booking, delivered: int, now: datetime) -> tuple[BookingPacing, Fraction]:
    """The booking's pacing at ``now`` and its exact spend in minor units (for the campaign's sum)."""
    phase = _phase(booking.flight_start, booking.flight_end, now)
    elapsed = _elapsed(booking.flight_start, booking.flight_end, now)
    booked = booking.booked_impressions
    expected = _round(booked * elapsed)
    if phase == "in_flight":
        projected = _round(delivered / elapsed) if elapsed else 0
    else:
        projected = delivered if phase == "ended" else 0
    status = _status(delivered, expected)
    if phase == "upcoming" or (status == "behind" and now - _midnight(booking.flight_start) < GRACE):
        status = "on_track"
    spend = _spend_minor(booking, delivered, elapsed)
    pacing = BookingPacing(
        booking_id=booking.id, podcast_id=booking.podcast_id, episode_id=booking.episode_id,
        placement=booking.placement, pricing_model=booking.pricing_model, currency=booking.currency,
        flight_start=booking.flight_start, flight_end=booking.flight_end, phase=phase, elapsed=float(elapsed),
        booked=booked, delivered=delivered, expected_to_date=expected, projected=projected,
        pace=_pace(delivered, expected), status=status, spend_to_date=money.to_major(float(spend), booking.currency),
        spend_to_date_minor=_round(spend),
    )  # fmt: skip
    return pacing, spend


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    return now


async def campaign_pacing(
    session: AsyncSession, campaign: Campaign, *, now: datetime | None = None
) -> CampaignPacingOut:
    """The pacing of each of the campaign's live (not cancelled) bookings at ``now`` (default: the
    current time), by flight start, and the campaign's totals: sums of booked, delivered, expected,
    projected and spend, with ``pace`` and ``status`` by the same thresholds over the sums (no phase
    rules there). Spend is summed in one currency: the bookings' own when they share it, else the most
    common one (ties to the alphabetically first), with ``mixed_currencies`` set and the other
    currencies' spend left out of the totals."""
    now = _now(now)
    bookings = list(
        await session.scalars(
            select(Booking)
            .where(Booking.campaign_id == campaign.id, Booking.status != CANCELLED)
            .order_by(Booking.flight_start, Booking.created_at, Booking.id)
        )
    )
    delivered = await measurement.delivered_impressions(session, bookings)
    rows = [_booking_pacing(b, delivered.get(b.id, 0), now) for b in bookings]
    paces = [pacing for pacing, _ in rows]
    counts = Counter(b.currency for b in bookings)
    currency = min(counts, key=lambda code: (-counts[code], code)) if counts else None
    spend = sum((minor for pacing, minor in rows if pacing.currency == currency), Fraction(0))
    total_delivered = sum(p.delivered for p in paces)
    total_expected = sum(p.expected_to_date for p in paces)
    return CampaignPacingOut(
        campaign_id=campaign.id,
        as_of=now,
        currency=currency,
        mixed_currencies=len(counts) > 1,
        booked=sum(p.booked for p in paces),
        delivered=total_delivered,
        expected_to_date=total_expected,
        projected=sum(p.projected for p in paces),
        pace=_pace(total_delivered, total_expected),
        status=_status(total_delivered, total_expected),
        spend_to_date=money.to_major(float(spend), currency) if currency else 0.0,
        spend_to_date_minor=_round(spend),
        bookings=paces,
    )


# Downloads per booking and UTC day inside its flight: the join of measurement's delivered
# impressions (the booked episode, or every episode of the podcast for run-of-show), grouped by day.
_DELIVERY_BY_DAY = text(
    """
    SELECT b.id, d.day, sum(d.downloads) AS delivered
    FROM unnest(CAST(:ids AS uuid[]), CAST(:podcasts AS uuid[]), CAST(:episodes AS uuid[]),
                CAST(:starts AS date[]), CAST(:ends AS date[])) AS b(id, podcast_id, episode_id, s, e)
    JOIN episodes ep
      ON ep.tenant_id = :t AND ep.podcast_id = b.podcast_id AND (b.episode_id IS NULL OR ep.id = b.episode_id)
    JOIN download_daily d ON d.tenant_id = :t AND d.episode_id = ep.id AND d.day BETWEEN b.s AND b.e
    GROUP BY b.id, d.day
    ORDER BY b.id, d.day
    """
)


async def delivery_by_day(session: AsyncSession, bookings: Sequence[Any]) -> dict[uuid.UUID, dict[date, int]]:
    """Delivered impressions of each booking per UTC day of its flight, in day order, by booking id;
    days without downloads are left out (a booking without any has an empty dict). Each booking's
    days sum to its ``measurement.delivered_impressions``. One query for all the bookings, which
    belong to one tenant."""
    by_day: dict[uuid.UUID, dict[date, int]] = {b.id: {} for b in bookings}
    if not bookings:
        return by_day
    rows = await session.execute(
        _DELIVERY_BY_DAY,
        {
            "t": bookings[0].tenant_id,
            "ids": [b.id for b in bookings],
            "podcasts": [b.podcast_id for b in bookings],
            "episodes": [b.episode_id for b in bookings],
            "starts": [b.flight_start for b in bookings],
            "ends": [b.flight_end for b in bookings],
        },
    )
    for row in rows:
        by_day[row.id][row.day] = int(row.delivered)
    return by_day


async def check_pacing(session: AsyncSession, tenant_id: uuid.UUID, *, now: datetime | None = None) -> int:
    """Flag the tenant's bookings that fell behind and announce each as ``booking.pacing_behind``.

    Looks at live bookings of ``active`` campaigns whose flight is under way at ``now`` or ended
    yesterday (so the last day is judged once it is complete), not flagged yet. Each one whose status
    is ``behind`` gets ``pacing_behind_at = now`` and one outbox event in this transaction. The alert
    goes out once per booking, ever: a flagged booking is never looked at again, even if it recovers
    and falls behind anew. The rows are locked ``FOR UPDATE SKIP LOCKED``, so two workers checking the
    same tenant at once never both announce a booking. Answers how many were announced."""
    now = _now(now)
    today = now.astimezone(UTC).date()
    result = await session.execute(
        select(Booking, Campaign.sponsor_id)
        .join(Campaign, and_(Campaign.tenant_id == Booking.tenant_id, Campaign.id == Booking.campaign_id))
        .where(
            Booking.tenant_id == tenant_id,
            Booking.status != CANCELLED,
            Booking.pacing_behind_at.is_(None),
            Booking.flight_start <= today,
            Booking.flight_end >= today - timedelta(days=1),
            Campaign.stage == "active",
        )
        .order_by(Booking.id)
        .with_for_update(of=Booking, skip_locked=True)
        .execution_options(populate_existing=True)
    )
    candidates = [(booking, sponsor_id) for booking, sponsor_id in result]
    delivered = await measurement.delivered_impressions(session, [booking for booking, _ in candidates])
    behind: list[tuple[Booking, uuid.UUID | None, BookingPacing]] = []
    for booking, sponsor_id in candidates:
        pacing, _ = _booking_pacing(booking, delivered.get(booking.id, 0), now)
        if pacing.status == "behind":
            behind.append((booking, sponsor_id, pacing))
    if not behind:
        return 0
    await session.execute(
        update(Booking)
        .where(Booking.tenant_id == tenant_id, Booking.id.in_([booking.id for booking, _, _ in behind]))
        .values(pacing_behind_at=now)
        .execution_options(synchronize_session="fetch")
    )
    for booking, sponsor_id, pacing in behind:
        await outbox.add_event(
            session,
            tenant_id=tenant_id,
            event_type=BEHIND_EVENT,
            payload={
                "booking_id": str(booking.id),
                "campaign_id": str(booking.campaign_id),
                "sponsor_id": str(sponsor_id) if sponsor_id else None,
                "podcast_id": str(booking.podcast_id),
                "episode_id": str(booking.episode_id) if booking.episode_id else None,
                "booked": pacing.booked,
                "delivered": pacing.delivered,
                "expected_to_date": pacing.expected_to_date,
                "projected": pacing.projected,
                "pace": pacing.pace,
                "flight_start": booking.flight_start.isoformat(),
                "flight_end": booking.flight_end.isoformat(),
            },
        )
    return len(behind)
