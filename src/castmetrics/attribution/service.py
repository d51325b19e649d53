"""What a campaign earned: conversions, revenue and spend under each attribution model, with ROI,
ROAS and CPA, in total, by day, by booking, by podcast and by episode (DESIGN.md "Attribution")."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.attribution import engine
from castmetrics.attribution.schemas import (
    MODELS,
    AttributionOut,
    BookingReturns,
    CompareOut,
    DayReturns,
    EpisodeReturns,
    Model,
    PodcastReturns,
)
from castmetrics.catalog import service as catalog
from castmetrics.db.binary import fetch_binary
from castmetrics.money import to_major
from castmetrics.sponsorship import pacing
from castmetrics.sponsorship.models import Booking, Campaign

DEFAULT_HALF_LIFE_DAYS = 7.0
DEFAULT_CURRENCY = "USD"
TOP_EPISODES = 50
# Conversion times are unbounded unless ``from`` / ``to`` say otherwise.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)

# GROUPING(currency, conv_day, booking_id, episode_id) of each grouping set of the campaign statement.
_ALL, _TOTAL, _BY_DAY, _BY_BOOKING, _BY_EPISODE = 0b1111, 0b0111, 0b0011, 0b0101, 0b0110

_CAMPAIGN_SELECT = """
    , detail AS (
        SELECT cr.*, CAST(cr.conv_at AT TIME ZONE 'UTC' AS date) AS conv_day, bk.id AS booking_id, ep.podcast_id
        FROM credited cr
        LEFT JOIN episodes ep ON ep.tenant_id = %(tenant_id)s AND ep.id = cr.episode_id
        LEFT JOIN LATERAL (
            SELECT b.id FROM bookings b
            WHERE b.tenant_id = %(tenant_id)s AND b.campaign_id = cr.campaign_id AND b.status <> 'cancelled'
              AND CAST(cr.touch_at AT TIME ZONE 'UTC' AS date) BETWEEN b.flight_start AND b.flight_end
              AND (b.episode_id = cr.episode_id OR (b.episode_id IS NULL AND b.podcast_id = ep.podcast_id))
            ORDER BY b.episode_id IS NULL, b.created_at, b.id
            LIMIT 1
        ) bk ON true
        WHERE cr.campaign_id = %(campaign_id)s
    )
    SELECT GROUPING(currency, conv_day, booking_id, episode_id) AS g, conv_day, booking_id, episode_id,
           min(CAST(podcast_id AS text)) AS podcast_id, currency,
           count(DISTINCT touch_id) AS touchpoints, count(DISTINCT conv_id) AS conversions_touched,
           (SELECT count(*) FROM conv v
            WHERE v.campaign_id = %(campaign_id)s
              AND NOT EXISTS (SELECT 1 FROM pair_src p WHERE p.conv_id = v.id AND p.conv_at = v.at)) AS unattributed,
           {sums}
    FROM detail
    GROUP BY GROUPING SETS ((), (currency), (currency, conv_day), (currency, booking_id), (currency, episode_id))
"""

_ALL_SELECT = """
    SELECT campaign_id, {sums}
    FROM credited
    GROUP BY campaign_id
"""


@dataclass(frozen=True)
class Options:
    """How to attribute: the lookback (null: each conversion's campaign's own), the time-decay
    half-life, and the conversion times counted, ``[start, end)`` (null: unbounded)."""

    lookback_days: int | None = None
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    start: datetime | None = None
    end: datetime | None = None

    @property
    def first_day(self) -> date | None:
        return self.start.astimezone(UTC).date() if self.start else None

    @property
    def last_day(self) -> date | None:
        return (self.end - timedelta(microseconds=1)).astimezone(UTC).date() if self.end else None


def statement_params(
    tenant_id: uuid.UUID, options: Options, groups: list[uuid.UUID] | None, max_lookback: int
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "lookback_days": options.lookback_days,
        "max_lookback_days": options.lookback_days or max_lookback,
        "half_life_seconds": engine.seconds(options.half_life_days),
        "start": options.start or _EARLIEST,
        "end": options.end or _LATEST,
        "groups": groups,
    }


async def max_lookback(session: AsyncSession, groups: list[uuid.UUID] | None) -> int:
    """The longest lookback of the campaigns in the sponsor ``groups`` (all when null)."""
    statement = select(func.max(Campaign.lookback_days))
    if groups is not None:
        statement = statement.where(func.coalesce(Campaign.sponsor_id, Campaign.id).in_(groups))
    return int(await session.scalar(statement) or 1)


def returns(earned: Sequence[float] | None, spend: float) -> dict[str, Any]:
    """Conversions and revenue (``earned``, none when nothing was), the spend, and the ratios of
    DESIGN.md, each null only where its divisor is 0."""
    conversions, revenue = earned or (0.0, 0.0)
    return {
        "conversions": conversions,
        "revenue": revenue,
        "spend": spend,
        "roi": (revenue - spend) / spend if spend else None,
        "roas": revenue / spend if spend else None,
        "cpa": spend / conversions if conversions else None,
    }


async def run_statement(session: AsyncSession, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run an attribution statement with the memory it needs for its joins and sorts."""
    await session.execute(text("SELECT set_config('work_mem', :value, true)"), {"value": engine.WORK_MEM})
    return await fetch_binary(session, sql, params)


# --- spend ---------------------------------------------------------------------------------------


def campaign_currency(bookings: Sequence[Booking]) -> str:
    """The currency of the campaign's bookings (the most common one if they differ)."""
    counts = Counter(b.currency for b in bookings)
    return counts.most_common(1)[0][0] if counts else DEFAULT_CURRENCY


def daily_spend_minor(booking: Booking, delivered_by_day: dict[date, int]) -> dict[date, Fraction]:
    """What the booking cost on each day, in minor units: a CPM booking ``rate × delivered / 1000``
    until its booked impressions are reached (then nothing more); a flat fee spread evenly over the
    flight's days. Summed over the flight they give DESIGN.md's spend."""
    if booking.pricing_model == "flat":
        days = (booking.flight_end - booking.flight_start).days + 1
        share = Fraction(booking.rate_minor, days)
        return {booking.flight_start + timedelta(days=n): share for n in range(days)}
    spend: dict[date, Fraction] = {}
    counted = 0
    for day in sorted(delivered_by_day):
        billable = min(counted + delivered_by_day[day], booking.booked_impressions) - counted
        counted += billable
        if billable > 0:
            spend[day] = Fraction(booking.rate_minor * billable, 1000)
    return spend


async def spend_by_booking_day(
    session: AsyncSession, bookings: Sequence[Booking], currency: str, options: Options
) -> dict[uuid.UUID, dict[date, Fraction]]:
    """Spend in minor units of ``currency`` (exact fractions) by live booking and UTC day, inside the
    options' range."""
    live = [b for b in bookings if b.status != "cancelled" and b.currency == currency]
    delivered = await pacing.delivery_by_day(session, live)
    first, last = options.first_day, options.last_day
    found: dict[uuid.UUID, dict[date, Fraction]] = {}
    for booking in live:
        days = daily_spend_minor(booking, delivered.get(booking.id, {}))
        found[booking.id] = {
            day: amount
            for day, amount in days.items()
            if (first is None or day >= first) and (last is None or day <= last)
        }
    return found


def _spend_per_day(spend: dict[uuid.UUID, dict[date, Fraction]]) -> dict[date, Fraction]:
    """The bookings' spend (as ``spend_by_booking_day`` answers it) added up per day."""
    total: dict[date, Fraction] = defaultdict(Fraction)
    for booking_days in spend.values():
        for day, amount in booking_days.items():
            total[day] += amount
    return total


# --- attribution ---------------------------------------------------------------------------------


async def _live_bookings(session: AsyncSession, campaign: Campaign) -> list[Booking]:
    rows = await session.scalars(
        select(Booking).where(Booking.campaign_id == campaign.id, Booking.status != "cancelled")
    )
    return list(rows.all())


async def campaign_models(
    session: AsyncSession, campaign: Campaign, models: Sequence[Model] = MODELS, options: Options = Options()
) -> list[AttributionOut]:
    """The campaign's returns under each of ``models``, from one statement over its sponsor's events."""
    group = campaign.sponsor_id or campaign.id
    lookback = options.lookback_days or campaign.lookback_days
    params = statement_params(campaign.tenant_id, options, [group], await max_lookback(session, [group]))
    params["campaign_id"] = campaign.id
    sql = engine.statement(_CAMPAIGN_SELECT.format(sums=engine.credit_sums(tuple(models))))
    rows = await run_statement(session, sql, params)

    bookings = await _live_bookings(session, campaign)
    currency = campaign_currency(bookings)
    spend = await spend_by_booking_day(session, bookings, currency, options)
    spend_by_day = _spend_per_day(spend)

    width = 8  # columns before the model sums
    touchpoints = unattributed = other_currency = 0
    totals: dict[Model, list[float]] = {m: [0.0, 0.0] for m in models}
    by_day: dict[Model, dict[date, list[float]]] = {m: defaultdict(lambda: [0.0, 0.0]) for m in models}
    by_booking: dict[Model, dict[uuid.UUID, list[float]]] = {m: defaultdict(lambda: [0.0, 0.0]) for m in models}
    by_episode: dict[Model, dict[uuid.UUID, list[float]]] = {m: defaultdict(lambda: [0.0, 0.0]) for m in models}
    episode_podcast: dict[uuid.UUID, uuid.UUID] = {}
    for row in rows:
        g, day, booking_id, episode_id, podcast_id, row_currency = row[:6]
        if g == _ALL:  # the only row when the campaign's touchpoints earned nothing
            unattributed = int(row[8])
            continue
        counts_revenue = row_currency is None or row_currency == currency
        if g == _TOTAL:
            touchpoints += int(row[6])
            if not counts_revenue:
                other_currency += int(row[7])
        for k, model in enumerate(models):
            credit = float(row[width + 1 + 2 * k] or 0.0)
            revenue = float(row[width + 2 + 2 * k] or 0.0) if counts_revenue else 0.0
            if g == _TOTAL:
                target = totals[model]
            elif g == _BY_DAY:
                target = by_day[model][day]
            elif g == _BY_BOOKING and booking_id is not None:
                target = by_booking[model][booking_id]
            elif g == _BY_EPISODE and episode_id is not None:
                target = by_episode[model][episode_id]
                if podcast_id is not None:
                    episode_podcast[episode_id] = uuid.UUID(podcast_id)
            else:
                continue
            target[0] += credit
            target[1] += revenue

    podcast_names, episode_titles = await catalog.names(session, episode_podcast.values(), episode_podcast)
    booking_info = {b.id: b for b in bookings}
    answers = []
    for model in models:
        days = sorted(set(by_day[model]) | set(spend_by_day))
        per_podcast: dict[uuid.UUID, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for episode_id, (credit, money) in by_episode[model].items():
            if episode_id in episode_podcast:
                per_podcast[episode_podcast[episode_id]][0] += credit
                per_podcast[episode_podcast[episode_id]][1] += money
        top = sorted(by_episode[model].items(), key=lambda item: (-item[1][0], str(item[0])))[:TOP_EPISODES]
        answers.append(
            AttributionOut(
                model=model,
                campaign_id=campaign.id,
                currency=currency,
                lookback_days=lookback,
                half_life_days=options.half_life_days,
                from_=options.first_day,
                to=options.last_day,
                touchpoints=touchpoints,
                unattributed_conversions=unattributed,
                other_currency_conversions=other_currency,
                **returns(totals[model], to_major(sum(spend_by_day.values(), Fraction()), currency)),
                days=[
                    DayReturns(
                        day=day,
                        **returns(by_day[model].get(day), to_major(spend_by_day.get(day, 0), currency)),
                    )
                    for day in days
                ],
                bookings=[
                    BookingReturns(
                        booking_id=b.id,
                        podcast_id=b.podcast_id,
                        episode_id=b.episode_id,
                        **returns(
                            by_booking[model].get(b.id),
                            to_major(sum(spend.get(b.id, {}).values(), Fraction()), currency),
                        ),
                    )
                    for b in sorted(booking_info.values(), key=lambda b: (b.flight_start, str(b.id)))
                ],
                podcasts=[
                    PodcastReturns(podcast_id=pid, name=podcast_names.get(pid, ""), conversions=c, revenue=r)
                    for pid, (c, r) in sorted(per_podcast.items(), key=lambda item: (-item[1][0], str(item[0])))
                ],
                episodes=[
                    EpisodeReturns(
                        episode_id=eid,
                        podcast_id=episode_podcast[eid],
                        title=episode_titles.get(eid, ""),
                        conversions=c,
                        revenue=r,
                    )
                    for eid, (c, r) in top
                    if eid in episode_podcast
                ],
            )
        )
    return answers


async def attribution(
    session: AsyncSession, campaign: Campaign, model: Model = "last_touch", options: Options = Options()
) -> AttributionOut:
    return (await campaign_models(session, campaign, (model,), options))[0]


async def compare(session: AsyncSession, campaign: Campaign, options: Options = Options()) -> CompareOut:
    answers = await campaign_models(session, campaign, MODELS, options)
    first = answers[0]
    return CompareOut(
        campaign_id=campaign.id,
        currency=first.currency,
        lookback_days=first.lookback_days,
        half_life_days=options.half_life_days,
        from_=options.first_day,
        to=options.last_day,
        models=answers,
    )


async def credit_by_campaign(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    models: Sequence[Model] = MODELS,
    options: Options = Options(),
    groups: list[uuid.UUID] | None = None,
) -> dict[tuple[uuid.UUID, Model], tuple[float, float]]:
    """(credited conversions, credited revenue in any currency) per (touch campaign, model) for every
    campaign of the tenant (or of the sponsor ``groups``), in one statement."""
    params = statement_params(tenant_id, options, groups, await max_lookback(session, groups))
    sql = engine.statement(_ALL_SELECT.format(sums=engine.credit_sums(tuple(models))), whole_tenant=groups is None)
    found: dict[tuple[uuid.UUID, Model], tuple[float, float]] = {}
    for row in await run_statement(session, sql, params):
        for k, model in enumerate(models):
            found[(row[0], model)] = (float(row[1 + 2 * k] or 0.0), float(row[2 + 2 * k] or 0.0))
    return found
