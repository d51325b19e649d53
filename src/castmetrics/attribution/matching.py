"""Sponsor–podcast matching: the tenant's podcasts ranked for one sponsor by a documented score.

``score = 0.35·audience + 0.20·listen_through + 0.30·conversion_rate + 0.15·inventory``, each component in
0..1, so the score is in 0..1 (docs/api.md "Sponsor matching"):

* ``audience``: IAB downloads of the podcast over the last 30 UTC days (today included), on a log scale
  against the tenant's biggest podcast, ``log1p(downloads) / log1p(max downloads)`` — a show ten times
  smaller is not worth a tenth for a sponsor, and the log keeps one giant from flattening the rest;
* ``listen_through``: completes ÷ plays over the last 90 UTC days (capped at 1), 0 without plays;
* ``conversion_rate``: linear-model credit per touchpoint on the podcast's episodes over the last 180
  days, of this sponsor's campaigns blended with similar sponsors' (weight: the Jaccard index of the two
  sponsors' sets of booked podcasts), smoothed toward the tenant-wide rate with a prior of
  ``PRIOR_TOUCHPOINTS`` (a Bayesian average, so three lucky touches do not top the list), divided by the
  best podcast's rate. Without a single touchpoint of this or a similar sponsor on the podcast there is no
  evidence at all: the rate is null and the component 0 (the prior alone would rank every unknown show at
  the tenant's average, above shows that were tried and did badly);
* ``inventory``: the share of (placement × day) slots free from tomorrow over the coming ``weeks``.

The aggregates are set-based SQL over the whole tenant: one statement for the podcasts with their
downloads, listening and booked slots, one for sponsor similarity, one for the attribution credits (the
attribution engine's ``credited`` chain); only the normalising and the weighting happen here.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.attribution import engine
from castmetrics.attribution.matching_schemas import (
    AudienceComponent,
    ConversionRateComponent,
    InventoryComponent,
    ListenThroughComponent,
    MatchComponents,
    MatchesOut,
    MatchOut,
    MatchWeights,
    SimilarSponsor,
)
from castmetrics.attribution.service import Options, max_lookback, run_statement, statement_params
from castmetrics.sponsorship.models import Sponsor

# The weights of the score. Audience and conversions lead (reach and proven results are what a sponsor
# buys), listen-through says whether a mid- or post-roll is heard, and free inventory breaks ties between
# shows that could not take the sponsor anyway. They sum to 1.
AUDIENCE_WEIGHT: Final = 0.35
LISTEN_THROUGH_WEIGHT: Final = 0.20
CONVERSION_RATE_WEIGHT: Final = 0.30
INVENTORY_WEIGHT: Final = 0.15
WEIGHTS: Final = MatchWeights(
    audience=AUDIENCE_WEIGHT,
    listen_through=LISTEN_THROUGH_WEIGHT,
    conversion_rate=CONVERSION_RATE_WEIGHT,
    inventory=INVENTORY_WEIGHT,
)

AUDIENCE_DAYS: Final = 30
LISTEN_THROUGH_DAYS: Final = 90
CONVERSION_DAYS: Final = 180
# How many touchpoints at the tenant-wide rate every podcast's own evidence is blended with.
PRIOR_TOUCHPOINTS: Final = 200
PLACEMENTS: Final = ("pre_roll", "mid_roll", "post_roll")
DEFAULT_WEEKS: Final = 4
DEFAULT_LIMIT: Final = 20

# Each podcast of the tenant with its IAB downloads (episode rollups, summed per podcast), its plays and
# completes (the podcast-scope listener rollups) and how many (placement, day) slots of the inventory
# window a live booking of a live campaign holds — episode-specific and run-of-show alike.
_PODCASTS = text(
    """
    WITH downloads AS (
        SELECT ep.podcast_id, sum(d.downloads) AS downloads
        FROM download_daily d
        JOIN episodes ep ON ep.tenant_id = d.tenant_id AND ep.id = d.episode_id
        WHERE d.tenant_id = :t AND d.day BETWEEN :audience_from AND :today
        GROUP BY ep.podcast_id
    ), listening AS (
        SELECT l.scope_id AS podcast_id, sum(l.plays) AS plays, sum(l.completes) AS completes
        FROM listener_daily l
        WHERE l.tenant_id = :t AND l.day BETWEEN :listen_from AND :today
        GROUP BY l.scope_id
    ), taken AS (
        SELECT s.podcast_id, count(*) AS slots
        FROM (
            SELECT DISTINCT b.podcast_id, b.placement, greatest(b.flight_start, :inventory_from) + k AS day
            FROM bookings b
            JOIN campaigns c ON c.tenant_id = b.tenant_id AND c.id = b.campaign_id
            CROSS JOIN LATERAL generate_series(
                0, least(b.flight_end, :inventory_to) - greatest(b.flight_start, :inventory_from)
            ) AS k
            WHERE b.tenant_id = :t AND b.status <> 'cancelled' AND c.stage <> 'cancelled'
              AND b.placement = ANY(:placements)
              AND b.flight_start <= :inventory_to AND b.flight_end >= :inventory_from
        ) s
        GROUP BY s.podcast_id
    )
    SELECT p.id, p.name, coalesce(dl.downloads, 0) AS downloads, coalesce(li.plays, 0) AS plays,
           coalesce(li.completes, 0) AS completes, coalesce(tk.slots, 0) AS taken
    FROM podcasts p
    LEFT JOIN downloads dl ON dl.podcast_id = p.id
    LEFT JOIN listening li ON li.podcast_id = p.id
    LEFT JOIN taken tk ON tk.podcast_id = p.id
    WHERE p.tenant_id = :t
    """
)

# The sponsors similar to :sponsor: those whose campaigns have (had) live bookings on a podcast it has
# too, with the Jaccard index |A ∩ B| / |A ∪ B| of the two sets of podcasts.
_SIMILAR = text(
    """
    WITH booked AS (
        SELECT DISTINCT c.sponsor_id, b.podcast_id
        FROM bookings b
        JOIN campaigns c ON c.tenant_id = b.tenant_id AND c.id = b.campaign_id
        WHERE b.tenant_id = :t AND b.status <> 'cancelled' AND c.stage <> 'cancelled' AND c.sponsor_id IS NOT NULL
    ), sizes AS (
        SELECT sponsor_id, count(*) AS podcasts FROM booked GROUP BY sponsor_id
    )
    SELECT o.sponsor_id, s.name, count(*) AS shared,
           CAST(count(*) AS float8) / (ms.podcasts + os.podcasts - count(*)) AS similarity
    FROM booked m
    JOIN booked o ON o.podcast_id = m.podcast_id AND o.sponsor_id <> m.sponsor_id
    JOIN sizes ms ON ms.sponsor_id = m.sponsor_id
    JOIN sizes os ON os.sponsor_id = o.sponsor_id
    JOIN sponsors s ON s.tenant_id = :t AND s.id = o.sponsor_id
    WHERE m.sponsor_id = :sponsor
    GROUP BY o.sponsor_id, s.name, ms.podcasts, os.podcasts
    ORDER BY similarity DESC, s.name, o.sponsor_id
    """
)

# Per podcast, the touchpoints of [start, end) on its episodes and the linear credit they earned, by
# attribution group (a sponsor, or a campaign without one): this sponsor's, the similar sponsors'
# weighted by similarity, and everyone's (for the tenant-wide rate). Credit of touches before ``start``
# is left out as their touchpoints are, so numerator and denominator count the same touches.
_CONVERSIONS = """
    , similar_sponsors AS (
        SELECT s.sponsor_id, s.similarity
        FROM unnest(CAST(%(similar_ids)s AS uuid[]), CAST(%(similarities)s AS float8[])) AS s(sponsor_id, similarity)
    ), earned AS (
        SELECT cm.grp, ep.podcast_id, sum(cr.linear) AS conversions, CAST(0 AS bigint) AS touchpoints
        FROM credited cr
        JOIN camp cm ON cm.id = cr.campaign_id
        JOIN episodes ep ON ep.tenant_id = %(tenant_id)s AND ep.id = cr.episode_id
        WHERE cr.touch_at >= %(start)s
        GROUP BY cm.grp, ep.podcast_id
        UNION ALL
        SELECT t.grp, ep.podcast_id, 0, count(*)
        FROM touch t
        JOIN episodes ep ON ep.tenant_id = %(tenant_id)s AND ep.id = t.episode_id
        WHERE t.at >= %(start)s
        GROUP BY t.grp, ep.podcast_id
    ), by_group AS (
        SELECT grp, podcast_id, sum(conversions) AS conversions, sum(touchpoints) AS touchpoints
        FROM earned
        GROUP BY grp, podcast_id
    )
    SELECT g.podcast_id,
           coalesce(sum(g.conversions) FILTER (WHERE g.grp = %(sponsor_id)s), 0) AS own_conversions,
           coalesce(sum(g.touchpoints) FILTER (WHERE g.grp = %(sponsor_id)s), 0) AS own_touchpoints,
           coalesce(sum(s.similarity * g.conversions), 0) AS similar_conversions,
           coalesce(sum(s.similarity * g.touchpoints), 0) AS similar_touchpoints,
           sum(g.conversions) AS all_conversions,
           sum(g.touchpoints) AS all_touchpoints
    FROM by_group g
    LEFT JOIN similar_sponsors s ON s.sponsor_id = g.grp
    GROUP BY g.podcast_id
"""


@dataclass(frozen=True)
class _Evidence:
    """Conversions and touchpoints on one podcast over the conversion window."""

    own_conversions: float = 0.0
    own_touchpoints: int = 0
    similar_conversions: float = 0.0
    similar_touchpoints: float = 0.0
    all_conversions: float = 0.0
    all_touchpoints: int = 0

    @property
    def touchpoints(self) -> float:
        return self.own_touchpoints + self.similar_touchpoints

    @property
    def conversions(self) -> float:
        return self.own_conversions + self.similar_conversions


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


async def _similar_sponsors(session: AsyncSession, sponsor: Sponsor) -> list[SimilarSponsor]:
    rows = await session.execute(_SIMILAR, {"t": sponsor.tenant_id, "sponsor": sponsor.id})
    return [
        SimilarSponsor(sponsor_id=row.sponsor_id, name=row.name, similarity=row.similarity, shared_podcasts=row.shared)
        for row in rows
    ]


async def _evidence(
    session: AsyncSession, sponsor: Sponsor, similar: list[SimilarSponsor], start: datetime, end: datetime
) -> dict[uuid.UUID, _Evidence]:
    params: dict[str, Any] = statement_params(
        sponsor.tenant_id, Options(start=start, end=end), None, await max_lookback(session, None)
    )
    params.update(
        sponsor_id=sponsor.id,
        similar_ids=[s.sponsor_id for s in similar],
        similarities=[s.similarity for s in similar],
    )
    rows = await run_statement(session, engine.statement(_CONVERSIONS), params)
    return {
        row[0]: _Evidence(
            own_conversions=float(row[1]),
            own_touchpoints=int(row[2]),
            similar_conversions=float(row[3]),
            similar_touchpoints=float(row[4]),
            all_conversions=float(row[5] or 0),
            all_touchpoints=int(row[6] or 0),
        )
        for row in rows
    }


async def matches(
    session: AsyncSession,
    sponsor: Sponsor,
    *,
    limit: int = DEFAULT_LIMIT,
    weeks: int = DEFAULT_WEEKS,
    now: datetime | None = None,
) -> MatchesOut:
    """The tenant's podcasts ranked for ``sponsor``: score and components of each, best first."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    audience_from = today - timedelta(days=AUDIENCE_DAYS - 1)
    listen_from = today - timedelta(days=LISTEN_THROUGH_DAYS - 1)
    inventory_from = today + timedelta(days=1)
    inventory_to = today + timedelta(days=7 * weeks)
    conversions_since = now - timedelta(days=CONVERSION_DAYS)

    podcasts = (
        await session.execute(
            _PODCASTS,
            {
                "t": sponsor.tenant_id,
                "today": today,
                "audience_from": audience_from,
                "listen_from": listen_from,
                "inventory_from": inventory_from,
                "inventory_to": inventory_to,
                "placements": list(PLACEMENTS),
            },
        )
    ).all()
    similar = await _similar_sponsors(session, sponsor)
    evidence = await _evidence(session, sponsor, similar, conversions_since, now)

    tenant_rate = _ratio(
        sum(e.all_conversions for e in evidence.values()), sum(e.all_touchpoints for e in evidence.values())
    )
    rates: dict[uuid.UUID, float] = {
        podcast_id: (e.conversions + PRIOR_TOUCHPOINTS * tenant_rate) / (e.touchpoints + PRIOR_TOUCHPOINTS)
        for podcast_id, e in evidence.items()
        if e.touchpoints > 0
    }
    best_rate = max(rates.values(), default=0.0)
    most_downloads = max((int(p.downloads) for p in podcasts), default=0)
    total_slots = len(PLACEMENTS) * 7 * weeks

    ranked = []
    for podcast in podcasts:
        downloads, plays, completes = int(podcast.downloads), int(podcast.plays), int(podcast.completes)
        found = evidence.get(podcast.id, _Evidence())
        rate = rates.get(podcast.id)
        free = total_slots - int(podcast.taken)
        components = MatchComponents(
            audience=AudienceComponent(
                value=downloads,
                score=_ratio(math.log1p(downloads), math.log1p(most_downloads)),
                downloads_30d=downloads,
            ),
            listen_through=ListenThroughComponent(
                value=completes / plays if plays else None,
                score=min(1.0, _ratio(completes, plays)),
                plays_90d=plays,
                completes_90d=completes,
            ),
            conversion_rate=ConversionRateComponent(
                value=rate,
                score=min(1.0, _ratio(rate or 0.0, best_rate)),
                own_conversions=found.own_conversions,
                own_touchpoints=found.own_touchpoints,
                similar_conversions=found.similar_conversions,
                similar_touchpoints=found.similar_touchpoints,
                raw_rate=found.conversions / found.touchpoints if found.touchpoints > 0 else None,
            ),
            inventory=InventoryComponent(
                value=free / total_slots, score=free / total_slots, free_slots=free, total_slots=total_slots
            ),
        )
        score = (
            AUDIENCE_WEIGHT * components.audience.score
            + LISTEN_THROUGH_WEIGHT * components.listen_through.score
            + CONVERSION_RATE_WEIGHT * components.conversion_rate.score
            + INVENTORY_WEIGHT * components.inventory.score
        )
        ranked.append(MatchOut(podcast_id=podcast.id, name=podcast.name, score=min(1.0, score), components=components))
    ranked.sort(key=lambda m: (-m.score, m.name, str(m.podcast_id)))

    return MatchesOut(
        sponsor_id=sponsor.id,
        weights=WEIGHTS,
        audience_from=audience_from,
        listen_through_from=listen_from,
        conversions_from=conversions_since.astimezone(UTC).date(),
        inventory_from=inventory_from,
        inventory_to=inventory_to,
        tenant_conversion_rate=tenant_rate,
        prior_touchpoints=PRIOR_TOUCHPOINTS,
        similar_sponsors=similar,
        podcasts=len(ranked),
        items=ranked[:limit],
    )
