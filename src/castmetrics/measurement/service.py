"""What other domains ask of measurement: delivered impressions of IO bookings."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


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
