"""What other domains ask of measurement: delivered impressions of IO bookings, and being told that
episodes' audio URLs changed (so requests that matched no episode are matched again)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.events import service as events
from castmetrics.events.partitions import utc_now

# Requests that matched no episode are matched again for this many recent days when an episode
# appears or changes its audio URL (the recorder may have seen the URL before the catalog did).
REMATCH_DAYS = 7


async def delivered_impressions(session: AsyncSession, bookings: Sequence[Any]) -> dict[uuid.UUID, int]:
    """IAB downloads of each booking's episode (or of every episode of its podcast, run-of-show)
    inside its flight (MEASUREMENT.md rule 9), from the download rollups, by booking id."""
    if not bookings:
        return {}
    rows = await session.execute(
        text(
            """
            SELECT b.id, coalesce(sum(d.downloads), 0) AS delivered
            FROM unnest(CAST(:ids AS uuid[]), CAST(:podcasts AS uuid[]), CAST(:episodes AS uuid[]),
                        CAST(:starts AS date[]), CAST(:ends AS date[])) AS b(id, podcast_id, episode_id, s, e)
            LEFT JOIN episodes ep
                   ON ep.tenant_id = :t AND ep.podcast_id = b.podcast_id
                  AND (b.episode_id IS NULL OR ep.id = b.episode_id)
            LEFT JOIN download_daily d ON d.tenant_id = :t AND d.episode_id = ep.id AND d.day BETWEEN b.s AND b.e
            GROUP BY b.id
            """
        ),
        {
            "t": bookings[0].tenant_id,
            "ids": [b.id for b in bookings],
            "podcasts": [b.podcast_id for b in bookings],
            "episodes": [b.episode_id for b in bookings],
            "starts": [b.flight_start for b in bookings],
            "ends": [b.flight_end for b in bookings],
        },
    )
    return {row.id: int(row.delivered) for row in rows}


async def episodes_changed(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Episodes were created or their audio URLs changed: recount the recent days, whose
    unmatched requests the recount matches again (``counting.recompute``)."""
    today = utc_now().date()
    await events.note_days(
        session, tenant_id, [today - timedelta(days=n) for n in range(REMATCH_DAYS)], kind="download"
    )
