"""Demo attribution: the impressions, clicks and conversions of the demo's campaigns, from its listening.

The ads ran where the demo listening says they were heard (``demo.listening`` must have written it):

* an impression for every listening session of a booked episode (or of any episode of a booked podcast)
  inside the booking's flight, where its placement plays: a pre-roll at the ``play``, a mid-roll at the
  ``progress`` mark half-way through (only sessions that got there), a post-roll at the ``complete``
  (only sessions that finished); a few seconds after that event. Pending and cancelled bookings and
  draft campaigns ran nothing; a paused, completed or cancelled campaign nothing after it was stopped
  (``stage_changed_at``);
* a click (on the booking's vanity URL) on a small share of the impressions, minutes later;
* a conversion (``attribution_data``: ``revenue`` in major units, ``currency`` the booking's) some time
  after one of the listener's touches, on that touch's campaign; a listener converts at most once in
  ``REPURCHASE_DAYS`` with one sponsor.

How listeners respond depends on the campaign's role among its sponsor's campaigns that ran (the
models credit a sponsor's touches together, DESIGN.md "Attribution"): the one that started first is the
sponsor's *awareness* campaign (frequency-capped to one impression a fortnight per listener, few clicks,
conversions rare and days later); the others are *direct response* (clicks on the vanity URL,
conversions hours after a click or within a day of an impression), and many times more so for a
listener the awareness campaign reached days before (``PRIMED_AFTER``). So the awareness campaign holds
the first touches and direct response the last and most recent ones: first touch credits the one, last
touch and time decay the other, linear and position based fall in between. A sponsor's only campaign
(or a campaign without sponsor) does a bit of both.

Every draw comes from a generator seeded by the touch's id, and every id is a uuid5 of the listening
event, the booking and the kind: the same listening gives the same events, and a re-run stores nothing
twice. The events go through ingestion like any batch (``events.ingest``, limits not enforced), so each
new conversion announces ``conversion.recorded``, as an imported one does.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any, Final

from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.demo.audience import DEFAULT_DURATION, PROGRESS_MARKS
from castmetrics.events import service as events
from castmetrics.tenancy.models import Tenant

NAMESPACE: Final = uuid.UUID("6f1f4f0e-3c2a-4d8e-b7a1-9d52c0e8a317")  # of the demo's attribution event ids
REPURCHASE_DAYS: Final = 21  # a listener converts at most once in this many days with one sponsor
PRIMED_AFTER: Final = timedelta(days=2)  # an awareness impression at least this long before primes…
PRIMED_WITHIN: Final = timedelta(days=30)  # …and at most this long before (the default lookback)
CLICK_AFTER_SECONDS: Final = 900.0  # mean delay from an impression to its click
REVENUE: Final = (20.0, 120.0, 45.0)  # a conversion's revenue in major units: lowest, highest, most common


@dataclass(frozen=True, slots=True)
class Response:
    """How listeners respond to a campaign's ads. Delays are drawn log-uniformly between their bounds."""

    click_share: float  # of impressions
    click_converts: float  # share of clicks followed by a conversion
    primed_click_converts: float  # the same, for a listener the sponsor's awareness campaign primed
    click_delay_hours: tuple[float, float]
    impression_converts: float  # share of impressions followed by a conversion (view-through)
    primed_impression_converts: float
    impression_delay_hours: tuple[float, float]
    frequency_cap: timedelta | None = None  # at most one impression per listener this often


ROLES: Final[dict[str, Response]] = {
    "awareness": Response(
        click_share=0.004, click_converts=0.05, primed_click_converts=0.05, click_delay_hours=(24.0, 120.0),
        impression_converts=0.002, primed_impression_converts=0.002, impression_delay_hours=(72.0, 300.0),
        frequency_cap=timedelta(days=14),
    ),
    "direct_response": Response(
        click_share=0.06, click_converts=0.06, primed_click_converts=0.5, click_delay_hours=(0.25, 8.0),
        impression_converts=0.002, primed_impression_converts=0.08, impression_delay_hours=(1.0, 24.0),
    ),
    "standalone": Response(
        click_share=0.03, click_converts=0.3, primed_click_converts=0.3, click_delay_hours=(0.5, 24.0),
        impression_converts=0.02, primed_impression_converts=0.02, impression_delay_hours=(6.0, 120.0),
    ),
}  # fmt: skip

# The ad plays the demo listening made: each live booking's placement in each session of its episode
# (or of any episode of its podcast) that reached the placement, inside the flight and before the
# campaign stopped, by listener, sponsor and time. A mid-roll follows the progress mark half-way
# through (its position is the rounded mark, as ``demo.listening`` writes it).
_AD_PLAYS = text(
    """
    SELECT l.listener_id, l.occurred_at, l.id AS event_id, l.episode_id, b.id AS booking_id, b.campaign_id,
           coalesce(c.sponsor_id, c.id) AS sponsor_group, b.placement, b.vanity_url, b.currency, b.flight_start
    FROM bookings b
    JOIN campaigns c ON c.tenant_id = b.tenant_id AND c.id = b.campaign_id
    JOIN episodes e ON e.tenant_id = b.tenant_id AND e.podcast_id = b.podcast_id
                   AND (b.episode_id IS NULL OR e.id = b.episode_id)
    JOIN listener_events l
      ON l.tenant_id = b.tenant_id AND l.episode_id = e.id
     AND l.occurred_at >= :since AND l.occurred_at < :until
     AND l.occurred_at >= CAST(b.flight_start AS timestamp) AT TIME ZONE 'UTC'
     AND l.occurred_at < CAST(b.flight_end + 1 AS timestamp) AT TIME ZONE 'UTC'
     AND l.event_type = CASE b.placement WHEN 'pre_roll' THEN 'play' WHEN 'mid_roll' THEN 'progress'
                                         ELSE 'complete' END
    WHERE b.tenant_id = :t AND b.status NOT IN ('pending', 'cancelled') AND c.stage <> 'draft'
      AND (c.stage = 'active' OR l.occurred_at < c.stage_changed_at)
      AND (b.placement <> 'mid_roll'
           OR abs(CAST(l.event_data ->> 'position_seconds' AS float8)
                  - least(CASE WHEN e.duration_seconds > 0 THEN e.duration_seconds ELSE :default_duration END,
                          86400) * :half_way) <= 0.5)
    ORDER BY l.listener_id, sponsor_group, l.occurred_at, l.id, b.id
    """
)

# The days ad plays can fall on: the flights of the live bookings of campaigns that ran.
_FLIGHTS = text(
    """
    SELECT min(b.flight_start), max(b.flight_end)
    FROM bookings b JOIN campaigns c ON c.tenant_id = b.tenant_id AND c.id = b.campaign_id
    WHERE b.tenant_id = :t AND b.status NOT IN ('pending', 'cancelled') AND c.stage <> 'draft'
    """
)


@dataclass(frozen=True, slots=True)
class AdPlay:
    """One booking's ad heard in one listening session: where and when it played."""

    listener_id: str
    occurred_at: datetime  # of the listening event it follows
    event_id: uuid.UUID  # that event's
    episode_id: uuid.UUID
    booking_id: uuid.UUID
    campaign_id: uuid.UUID
    sponsor_group: uuid.UUID  # the campaign's sponsor, or the campaign itself without one
    placement: str
    vanity_url: str | None
    currency: str
    flight_start: date


@dataclass(frozen=True, slots=True)
class _Conversion:
    at: float  # epoch seconds
    trigger: uuid.UUID  # the touch it followed
    campaign_id: uuid.UUID
    revenue: float
    currency: str


def _rng(event_id: uuid.UUID) -> random.Random:
    return random.Random(event_id.int)


def _moment(seconds: float) -> str:
    return datetime.fromtimestamp(round(seconds), UTC).isoformat()


def campaign_roles(plays: Sequence[AdPlay]) -> dict[uuid.UUID, str]:
    """Each campaign's role (a key of ``ROLES``) among its sponsor's campaigns that ran: the earliest
    flight is the awareness campaign, the others direct response; a sponsor's only one is standalone."""
    starts: dict[uuid.UUID, dict[uuid.UUID, date]] = {}
    for play in plays:
        campaigns = starts.setdefault(play.sponsor_group, {})
        known = campaigns.get(play.campaign_id)
        if known is None or play.flight_start < known:
            campaigns[play.campaign_id] = play.flight_start
    roles: dict[uuid.UUID, str] = {}
    for campaigns in starts.values():
        ordered = sorted(campaigns, key=lambda campaign_id: (campaigns[campaign_id], str(campaign_id)))
        if len(ordered) == 1:
            roles[ordered[0]] = "standalone"
        else:
            roles[ordered[0]] = "awareness"
            roles.update(dict.fromkeys(ordered[1:], "direct_response"))
    return roles


def produce(plays: Sequence[AdPlay], until: datetime) -> list[dict[str, Any]]:
    """The attribution events (as ingestion takes them) of ``plays``, sorted by listener, sponsor group
    and time as ``ad_plays`` answers them, that fall before ``until``; in time order."""
    roles = campaign_roles(plays)
    limit = until.timestamp()
    produced: list[dict[str, Any]] = []
    for _, audience in groupby(plays, key=lambda play: (play.listener_id, play.sponsor_group)):
        produced += _audience(list(audience), roles, limit)
    produced.sort(key=lambda event: (event["occurred_at"], event["id"]))
    return produced


def _follows(
    rng: random.Random, play: AdPlay, touch: uuid.UUID, at: float, share: float, delay: tuple[float, float]
) -> _Conversion | None:
    """The conversion following ``touch`` (at ``at``), with probability ``share``. The draws are made
    either way, so that the touch's other draws never depend on ``share``."""
    draw, lag, revenue = rng.random(), rng.uniform(math.log(delay[0]), math.log(delay[1])), rng.triangular(*REVENUE)
    if draw >= share:
        return None
    return _Conversion(at + math.exp(lag) * 3_600, touch, play.campaign_id, round(revenue, 2), play.currency)


def _event(play: AdPlay, event_id: uuid.UUID, kind: str, at: float, data: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": str(event_id),
        "campaign_id": str(play.campaign_id),
        "episode_id": str(play.episode_id),
        "listener_id": play.listener_id,
        "attribution_type": kind,
        "attribution_data": data,
        "occurred_at": _moment(at),
    }


def _audience(plays: list[AdPlay], roles: dict[uuid.UUID, str], limit: float) -> list[dict[str, Any]]:
    """One listener's touches by one sponsor's campaigns (in time order), and the conversions they led to."""
    out: list[dict[str, Any]] = []
    primers: list[float] = []  # the listener's awareness impressions so far, in time order
    capped: dict[uuid.UUID, float] = {}  # campaign -> until when its frequency cap holds its ads back
    candidates: list[_Conversion] = []
    for play in plays:
        role = roles[play.campaign_id]
        response = ROLES[role]
        impression = uuid.uuid5(NAMESPACE, f"impression/{play.booking_id}/{play.event_id}")
        rng = _rng(impression)
        at = play.occurred_at.timestamp() + rng.uniform(1.0, 10.0)
        clicked = rng.random() < response.click_share
        clicked_at = at + 10.0 + rng.expovariate(1 / CLICK_AFTER_SECONDS)
        if at >= limit or at < capped.get(play.campaign_id, -math.inf):
            continue
        if response.frequency_cap is not None:
            capped[play.campaign_id] = at + response.frequency_cap.total_seconds()
        primed = bisect_left(primers, at - PRIMED_WITHIN.total_seconds()) < bisect_right(
            primers, at - PRIMED_AFTER.total_seconds()
        )
        if role == "awareness":
            primers.append(at)
        out.append(_event(play, impression, "impression", at, {"placement": play.placement}))
        share = response.primed_impression_converts if primed else response.impression_converts
        if (found := _follows(rng, play, impression, at, share, response.impression_delay_hours)) is not None:
            candidates.append(found)
        if clicked and clicked_at < limit:
            click = uuid.uuid5(NAMESPACE, f"click/{impression}")
            out.append(_event(play, click, "click", clicked_at, {"url": play.vanity_url} if play.vanity_url else None))
            share = response.primed_click_converts if primed else response.click_converts
            if (found := _follows(_rng(click), play, click, clicked_at, share, response.click_delay_hours)) is not None:
                candidates.append(found)
    last = -math.inf
    for conversion in sorted(candidates, key=lambda c: (c.at, str(c.trigger))):
        if conversion.at - last < REPURCHASE_DAYS * 86_400:
            continue
        last = conversion.at
        if conversion.at < limit:
            out.append(
                {
                    "id": str(uuid.uuid5(NAMESPACE, f"conversion/{conversion.trigger}")),
                    "campaign_id": str(conversion.campaign_id),
                    "listener_id": plays[0].listener_id,
                    "attribution_type": "conversion",
                    "attribution_data": {"revenue": conversion.revenue, "currency": conversion.currency},
                    "occurred_at": _moment(conversion.at),
                }
            )
    return out


@dataclass
class AttributionResult:
    """What a run wrote: events sent by kind, newly stored, already there, refused."""

    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)  # the first few refusals, should there be any
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"Attribution: {self.impressions:,} impressions, {self.clicks:,} clicks, {self.conversions:,} "
            f"conversions ({self.accepted:,} new, {self.duplicates:,} duplicates"
            + (f", {self.rejected:,} refused" if self.rejected else "")
            + f") in {self.seconds:.1f} s"
        )


async def ad_plays(db: Database, tenant_id: uuid.UUID, since: datetime, until: datetime) -> list[AdPlay]:
    """The tenant's ad plays in ``[since, until)`` (``_AD_PLAYS``)."""
    async with db.tenant_transaction(tenant_id) as session:
        first, last = (await session.execute(_FLIGHTS, {"t": tenant_id})).one()
        if first is None:
            return []
        # Bounds the planner prunes the day partitions by (the flights' own bounds are per row).
        since = max(since, datetime.combine(first, datetime.min.time(), UTC))
        until = min(until, datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC))
        if since >= until:
            return []
        rows = await session.execute(
            _AD_PLAYS,
            {
                "t": tenant_id,
                "since": since,
                "until": until,
                "default_duration": DEFAULT_DURATION,
                "half_way": (PROGRESS_MARKS // 2) / PROGRESS_MARKS,
            },
        )
        return [AdPlay(*row) for row in rows]


async def has_attribution(db: Database, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant has any attribution event stored."""
    async with db.tenant_transaction(tenant_id) as session:
        return bool((await session.execute(text("SELECT EXISTS (SELECT 1 FROM attribution_events)"))).scalar_one())


async def generate(
    db: Database, tenant_id: uuid.UUID, *, retention_days: int, now: datetime | None = None
) -> AttributionResult:
    """Write the attribution events of the tenant's campaigns, from its listening up to the start of
    ``now``'s hour and inside the retention, through ingestion: one batch per transaction."""
    started = time.perf_counter()
    moment = now or datetime.now(UTC)
    until = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    produced = produce(await ad_plays(db, tenant_id, until - timedelta(days=retention_days - 1), until), until)
    result = AttributionResult()
    for offset in range(0, len(produced), events.MAX_BATCH):
        batch = produced[offset : offset + events.MAX_BATCH]
        async with db.tenant_transaction(tenant_id) as session:
            tenant = await session.get_one(Tenant, tenant_id)
            written = await events.ingest(
                session,
                tenant,
                "attribution",
                enumerate(batch),
                db=db,
                retention_days=retention_days,
                enforce_limits=False,
                now=moment,
            )
        result.accepted += written.accepted
        result.duplicates += written.duplicates
        result.rejected += len(written.rejected)
        result.errors += [r["error"] for r in written.rejected[: 5 - len(result.errors)]]
    for event in produced:
        kind = event["attribution_type"]
        result.impressions += kind == "impression"
        result.clicks += kind == "click"
        result.conversions += kind == "conversion"
    result.seconds = time.perf_counter() - started
    return result
