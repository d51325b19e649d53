"""IAB v2 counting in SQL: which recorded requests are downloads, per tenant and UTC day.

The recorder stores every request with what the rules need (bot, method, probe, bounded range
length); this module applies the rules of docs/measurement.md to one day at a time:

* rule 1–3: bots, other methods than GET and probes (a Range of at most 2 bytes) never count;
* rule 4: a client whose only requests for an episode are bounded ranges counts once their lengths
  add up to one minute of audio (``size × 60 / duration`` + a 10 kB ID3 allowance), when the episode's
  size and duration are known; a request without Range or with an open-ended one counts;
* rule 6: one download per client (keyed hash of address + user agent, salted per day) × episode ×
  UTC day.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.measurement import urls

ALL_PODCASTS = uuid.UUID(int=0)
ID3_ALLOWANCE_BYTES = 10_240
UNKNOWN = "Unknown"

# One row per (episode, client) that the rules count as a download on the day.
_DOWNLOADS = f"""
    SELECT r.episode_id, r.client_hash, min(r.requested_at) AS first_at,
           min(coalesce(r.country, '{UNKNOWN}')) AS country,
           min(coalesce(r.app, '{UNKNOWN}')) AS app,
           min(coalesce(r.device, '{UNKNOWN}')) AS device,
           min(coalesce(r.device_category, '{UNKNOWN}')) AS device_category
    FROM download_requests r
    LEFT JOIN episodes e ON e.tenant_id = r.tenant_id AND e.id = r.episode_id
    WHERE r.tenant_id = :t AND r.requested_at >= :start AND r.requested_at < :end
      AND r.episode_id IS NOT NULL AND NOT r.is_bot AND r.method = 'GET' AND NOT r.is_probe
    GROUP BY r.episode_id, r.client_hash, (r.requested_at AT TIME ZONE 'UTC')::date
    HAVING bool_or(r.range_bytes IS NULL)
        OR sum(r.range_bytes) >= CASE
               WHEN max(e.audio_length_bytes) > 0 AND max(e.duration_seconds) > 0
               THEN max(e.audio_length_bytes)::numeric * 60 / max(e.duration_seconds) + {ID3_ALLOWANCE_BYTES}
               ELSE 0 END
"""

# The day's downloads are worked out once into a temporary table (with each episode's podcast), then
# every rollup is grouped from it.
_SCOPE = """CASE WHEN grouping(d.episode_id) = 0 THEN d.episode_id
                WHEN grouping(d.podcast_id) = 0 THEN d.podcast_id
                ELSE CAST(:all AS uuid) END"""
_SCOPES_HAVING = "HAVING grouping(d.episode_id) = 0 OR grouping(d.podcast_id) = 1 OR d.podcast_id IS NOT NULL"
_RECOMPUTE = [
    "DROP TABLE IF EXISTS pg_temp.day_downloads",
    f"""
    CREATE TEMPORARY TABLE day_downloads ON COMMIT DROP AS
    SELECT d.*, ep.podcast_id FROM ({_DOWNLOADS}) d LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = d.episode_id
    """,
    "DELETE FROM download_daily WHERE tenant_id = :t AND day = :day",
    """
    INSERT INTO download_daily
        (tenant_id, day, episode_id, country, app, device, device_category, downloads)
    SELECT :t, :day, episode_id, country, app, device, device_category, count(*)
    FROM day_downloads
    GROUP BY episode_id, country, app, device, device_category
    """,
    "DELETE FROM download_breakdown_daily WHERE tenant_id = :t AND day = :day",
    f"""
    INSERT INTO download_breakdown_daily (tenant_id, day, scope_id, dimension, key, downloads, listeners)
    SELECT :t, :day, {_SCOPE}, d.dimension, d.key, count(*), count(DISTINCT d.client_hash)
    FROM (
        SELECT x.episode_id, x.podcast_id, x.client_hash, v.dimension, v.key
        FROM day_downloads x
        CROSS JOIN LATERAL (VALUES ('country', x.country), ('app', x.app), ('device', x.device),
                                   ('device_category', x.device_category)) AS v(dimension, key)
    ) d
    GROUP BY GROUPING SETS ((d.dimension, d.key, d.episode_id), (d.dimension, d.key, d.podcast_id),
                            (d.dimension, d.key))
    {_SCOPES_HAVING}
    """,
    "DELETE FROM download_listeners_daily WHERE tenant_id = :t AND day = :day",
    f"""
    INSERT INTO download_listeners_daily (tenant_id, day, scope_id, downloads, listeners)
    SELECT :t, :day, {_SCOPE}, count(*), count(DISTINCT d.client_hash)
    FROM day_downloads d
    GROUP BY GROUPING SETS ((d.episode_id), (d.podcast_id), ())
    {_SCOPES_HAVING}
    """,
    # A download happens at its first request of the day: hourly counts for hours and time zones.
    "DELETE FROM download_hourly WHERE tenant_id = :t AND hour >= :start AND hour < :end",
    f"""
    INSERT INTO download_hourly (tenant_id, scope_id, hour, downloads)
    SELECT :t, {_SCOPE}, d.hour, count(*)
    FROM (SELECT episode_id, podcast_id, date_trunc('hour', first_at, 'UTC') AS hour FROM day_downloads) d
    GROUP BY GROUPING SETS ((d.hour, d.episode_id), (d.hour, d.podcast_id), (d.hour))
    {_SCOPES_HAVING}
    """,
    "DROP TABLE day_downloads",
]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


async def match_late(session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime) -> int:
    """Give requests that matched no episode when recorded the episode their URL points at now (an
    episode created after its first downloads). Answers how many requests were matched."""
    unmatched = (
        (
            await session.execute(
                text(
                    "SELECT DISTINCT url FROM download_requests WHERE tenant_id = :t AND requested_at >= :start "
                    "AND requested_at < :end AND episode_id IS NULL LIMIT 10000"
                ),
                {"t": tenant_id, "start": start, "end": end},
            )
        )
        .scalars()
        .all()
    )
    if not unmatched:
        return 0
    rows = await session.execute(
        text("SELECT id, audio_url FROM episodes WHERE tenant_id = :t AND audio_url IS NOT NULL"), {"t": tenant_id}
    )
    by_key = {urls.match_key(row.audio_url): row.id for row in rows}
    pairs = [(url, by_key[urls.match_key(url)]) for url in unmatched if urls.match_key(url) in by_key]
    if not pairs:
        return 0
    result = await session.execute(
        text(
            "UPDATE download_requests r SET episode_id = m.episode_id "
            "FROM unnest(CAST(:urls AS text[]), CAST(:ids AS uuid[])) AS m(url, episode_id) "
            "WHERE r.tenant_id = :t AND r.requested_at >= :start AND r.requested_at < :end "
            "AND r.episode_id IS NULL AND r.url = m.url"
        ),
        {"t": tenant_id, "start": start, "end": end, "urls": [u for u, _ in pairs], "ids": [i for _, i in pairs]},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def recompute(session: AsyncSession, tenant_id: uuid.UUID, days: Iterable[date]) -> None:
    """Replace the download rollups of ``days`` with what the recorded requests say now."""
    for day in sorted(set(days)):
        start, end = day_bounds(day)
        await match_late(session, tenant_id, start, end)
        params = {"t": tenant_id, "day": day, "start": start, "end": end, "all": ALL_PODCASTS}
        for statement in _RECOMPUTE:
            await session.execute(text(statement), params)


def downloads_query(extra_where: str = "") -> str:
    """The rule-applying query for one day range (used for the raw tail and as the reference)."""
    return _DOWNLOADS.replace("GROUP BY r.episode_id", f"{extra_where} GROUP BY r.episode_id", 1)
