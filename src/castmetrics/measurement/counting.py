"""IAB v2 counting in SQL: which recorded requests are downloads, per tenant and UTC day.

The recorder stores every request with what the rules need (bot, method, probe, bounded range
length); this module applies the rules of docs/measurement.md to one day at a time:

* rule 1–3: bots, other methods than GET and probes (a Range of at most 2 bytes) never count;
* rule 4: a client whose only requests for an episode are bounded ranges counts once their lengths
  add up to one minute of audio (``size × 60 / duration`` + a 10 kB ID3 allowance), when the episode's
  size and duration are known; a request without Range or with an open-ended one counts;
* rule 6: one download per client (keyed hash of address + user agent, salted per day) × episode ×
  UTC day.

Rollups are kept up to date batch by batch (``add``): every rollup is a sum over clients (a client's
downloads, and 1 for each scope it has a download in), so a new batch changes only the contributions of
the clients it names. ``add`` works those clients' downloads of the day out from their raw requests (an
index on ``(tenant_id, client_hash)`` per day partition) once without and once with the new batches, and
adds the difference: a download that appears, or whose first request or dimension values move (a late
request earlier in the day), and listeners that appear, whatever the day already holds. ``recompute``
replaces whole days (a day noted outside any batch, ``rebuild``); both leave out the requests of batches
still pending besides the ones they answer, so no request is ever counted twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.events.partitions import runs_of_days
from castmetrics.events.rollups import days_between, sum_month
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

# The requests a recount of whole days reads: all but those of batches still pending besides the log rows
# it answers (``taken``); ``add`` brings those later.
_NOT_PENDING = (
    "AND NOT EXISTS (SELECT 1 FROM rollup_invalidations i WHERE i.tenant_id = :t AND i.kind = 'download' "
    "AND i.day = (r.requested_at AT TIME ZONE 'UTC')::date AND i.batch_id = r.batch_id "
    "AND i.id <> ALL(CAST(:taken AS bigint[])))"
)
_RECOUNTED = _DOWNLOADS.replace(
    "SELECT r.episode_id,", "SELECT (r.requested_at AT TIME ZONE 'UTC')::date AS day, r.episode_id,", 1
).replace("GROUP BY r.episode_id", f"{_NOT_PENDING} GROUP BY r.episode_id", 1)

# The downloads of a run of days are worked out once into a temporary table (with each episode's podcast),
# then every rollup is grouped from it.
_SCOPE = """CASE WHEN grouping(d.episode_id) = 0 THEN d.episode_id
                WHEN grouping(d.podcast_id) = 0 THEN d.podcast_id
                ELSE CAST(:all AS uuid) END"""
_SCOPES_HAVING = "HAVING grouping(d.episode_id) = 0 OR grouping(d.podcast_id) = 1 OR d.podcast_id IS NOT NULL"
_RECOMPUTE = [
    "DROP TABLE IF EXISTS pg_temp.day_downloads",
    f"""
    CREATE TEMPORARY TABLE day_downloads ON COMMIT DROP AS
    SELECT d.*, ep.podcast_id FROM ({_RECOUNTED}) d LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = d.episode_id
    """,
    "DELETE FROM download_daily WHERE tenant_id = :t AND day BETWEEN :first AND :last",
    """
    INSERT INTO download_daily
        (tenant_id, day, episode_id, country, app, device, device_category, downloads)
    SELECT :t, day, episode_id, country, app, device, device_category, count(*)
    FROM day_downloads
    GROUP BY day, episode_id, country, app, device, device_category
    """,
    "DELETE FROM download_breakdown_daily WHERE tenant_id = :t AND day BETWEEN :first AND :last",
    f"""
    INSERT INTO download_breakdown_daily (tenant_id, day, scope_id, dimension, key, downloads, listeners)
    SELECT :t, d.day, {_SCOPE}, d.dimension, d.key, count(*), count(DISTINCT d.client_hash)
    FROM (
        SELECT x.day, x.episode_id, x.podcast_id, x.client_hash, v.dimension, v.key
        FROM day_downloads x
        CROSS JOIN LATERAL (VALUES ('country', x.country), ('app', x.app), ('device', x.device),
                                   ('device_category', x.device_category)) AS v(dimension, key)
    ) d
    GROUP BY GROUPING SETS ((d.day, d.dimension, d.key, d.episode_id), (d.day, d.dimension, d.key, d.podcast_id),
                            (d.day, d.dimension, d.key))
    {_SCOPES_HAVING}
    """,
    "DELETE FROM download_listeners_daily WHERE tenant_id = :t AND day BETWEEN :first AND :last",
    f"""
    INSERT INTO download_listeners_daily (tenant_id, day, scope_id, downloads, listeners)
    SELECT :t, d.day, {_SCOPE}, count(*), count(DISTINCT d.client_hash)
    FROM day_downloads d
    GROUP BY GROUPING SETS ((d.day, d.episode_id), (d.day, d.podcast_id), (d.day))
    {_SCOPES_HAVING.replace("HAVING", "HAVING count(*) > 0 AND (")})
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

# ``add``: the downloads of the clients a batch names, per (episode, client), without the new batches (sign
# -1, what the rollups hold for them) and with them (sign +1), from those clients' requests of the day (one
# index lookup per client). Both leave out batches still pending besides the new ones. A pair whose
# download did not change appears with both signs and cancels out.
_COUNTABLE = "{r}.episode_id IS NOT NULL AND NOT {r}.is_bot AND {r}.method = 'GET' AND NOT {r}.is_probe"
_FRESH = "coalesce(x.batch_id = ANY(CAST(:batches AS bigint[])), false)"
_ATTRIBUTES = ("country", "app", "device", "device_category")


def _side(name: str, where: str) -> str:
    only = f" FILTER (WHERE {where})" if where else ""
    values = ", ".join(f"min(coalesce(r.{a}, '{UNKNOWN}')){only} AS {a}_{name}" for a in _ATTRIBUTES)
    return (
        f"bool_or(r.range_bytes IS NULL){only} AS open_{name}, sum(r.range_bytes){only} AS bytes_{name}, "
        f"min(r.requested_at){only} AS first_{name}, {values}"
    )


_DELTA = f"""
    CREATE TEMPORARY TABLE download_delta ON COMMIT DROP AS
    WITH clients AS (
        SELECT DISTINCT r.client_hash FROM download_requests r
        WHERE r.tenant_id = :t AND r.requested_at >= :start AND r.requested_at < :end
          AND r.batch_id = ANY(CAST(:batches AS bigint[])) AND {_COUNTABLE.format(r="r")}
    ), pairs AS (
        SELECT r.episode_id, r.client_hash, {_side("before", "NOT r.fresh")}, {_side("after", "")}
        FROM clients c
        CROSS JOIN LATERAL (
            SELECT x.*, {_FRESH} AS fresh FROM download_requests x
            WHERE x.tenant_id = :t AND x.client_hash = c.client_hash
              AND x.requested_at >= :start AND x.requested_at < :end AND {_COUNTABLE.format(r="x")}
              AND NOT EXISTS (SELECT 1 FROM rollup_invalidations i WHERE i.tenant_id = :t AND i.kind = 'download'
                              AND i.day = :day AND i.batch_id = x.batch_id
                              AND i.batch_id <> ALL(CAST(:batches AS bigint[])))
        ) r
        GROUP BY r.episode_id, r.client_hash
    )
    SELECT s.sign, p.episode_id, ep.podcast_id, p.client_hash, s.first_at, s.country, s.app, s.device,
           s.device_category
    FROM pairs p
    LEFT JOIN episodes ep ON ep.tenant_id = :t AND ep.id = p.episode_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN ep.audio_length_bytes > 0 AND ep.duration_seconds > 0
                    THEN ep.audio_length_bytes::numeric * 60 / ep.duration_seconds + {ID3_ALLOWANCE_BYTES}
                    ELSE 0 END AS minute
    ) m
    CROSS JOIN LATERAL (VALUES
        (-1, p.open_before OR p.bytes_before >= m.minute, p.first_before,
         {", ".join(f"p.{a}_before" for a in _ATTRIBUTES)}),
        (1, p.open_after OR p.bytes_after >= m.minute, p.first_after,
         {", ".join(f"p.{a}_after" for a in _ATTRIBUTES)})
    ) AS s(sign, counted, first_at, {", ".join(_ATTRIBUTES)})
    WHERE s.counted
"""
_CHANGED = "HAVING ({having}) AND (sum(d.sign) <> 0 OR {listeners} <> 0)"
_LISTENERS = (
    "(count(DISTINCT d.client_hash) FILTER (WHERE d.sign > 0) "
    "- count(DISTINCT d.client_hash) FILTER (WHERE d.sign < 0))"
)
_IN_SCOPE = "grouping(d.episode_id) = 0 OR grouping(d.podcast_id) = 1 OR d.podcast_id IS NOT NULL"
_ADD = [
    """
    INSERT INTO download_daily AS o
        (tenant_id, day, episode_id, country, app, device, device_category, downloads)
    SELECT :t, :day, d.episode_id, d.country, d.app, d.device, d.device_category, sum(d.sign)
    FROM download_delta d
    GROUP BY d.episode_id, d.country, d.app, d.device, d.device_category
    HAVING sum(d.sign) <> 0
    ON CONFLICT (tenant_id, day, episode_id, country, app, device, device_category)
    DO UPDATE SET downloads = o.downloads + EXCLUDED.downloads
    """,
    "DELETE FROM download_daily WHERE tenant_id = :t AND day = :day AND downloads = 0",
    f"""
    INSERT INTO download_breakdown_daily AS o (tenant_id, day, scope_id, dimension, key, downloads, listeners)
    SELECT :t, :day, {_SCOPE}, d.dimension, d.key, sum(d.sign), {_LISTENERS}
    FROM (
        SELECT x.sign, x.episode_id, x.podcast_id, x.client_hash, v.dimension, v.key
        FROM download_delta x
        CROSS JOIN LATERAL (VALUES ('country', x.country), ('app', x.app), ('device', x.device),
                                   ('device_category', x.device_category)) AS v(dimension, key)
    ) d
    GROUP BY GROUPING SETS ((d.dimension, d.key, d.episode_id), (d.dimension, d.key, d.podcast_id),
                            (d.dimension, d.key))
    {_CHANGED.format(having=_IN_SCOPE, listeners=_LISTENERS)}
    ON CONFLICT (tenant_id, scope_id, dimension, day, key)
    DO UPDATE SET downloads = o.downloads + EXCLUDED.downloads, listeners = o.listeners + EXCLUDED.listeners
    """,
    "DELETE FROM download_breakdown_daily WHERE tenant_id = :t AND day = :day AND downloads = 0",
    f"""
    INSERT INTO download_listeners_daily AS o (tenant_id, day, scope_id, downloads, listeners)
    SELECT :t, :day, {_SCOPE}, sum(d.sign), {_LISTENERS}
    FROM download_delta d
    GROUP BY GROUPING SETS ((d.episode_id), (d.podcast_id), ())
    {_CHANGED.format(having=_IN_SCOPE, listeners=_LISTENERS)}
    ON CONFLICT (tenant_id, scope_id, day)
    DO UPDATE SET downloads = o.downloads + EXCLUDED.downloads, listeners = o.listeners + EXCLUDED.listeners
    """,
    "DELETE FROM download_listeners_daily WHERE tenant_id = :t AND day = :day AND downloads = 0",
    f"""
    INSERT INTO download_hourly AS o (tenant_id, scope_id, hour, downloads)
    SELECT :t, {_SCOPE}, d.hour, sum(d.sign)
    FROM (SELECT sign, episode_id, podcast_id, date_trunc('hour', first_at, 'UTC') AS hour FROM download_delta) d
    GROUP BY GROUPING SETS ((d.hour, d.episode_id), (d.hour, d.podcast_id), (d.hour))
    HAVING ({_IN_SCOPE}) AND sum(d.sign) <> 0
    ON CONFLICT (tenant_id, scope_id, hour) DO UPDATE SET downloads = o.downloads + EXCLUDED.downloads
    """,
    "DELETE FROM download_hourly WHERE tenant_id = :t AND hour >= :start AND hour < :end AND downloads = 0",
    f"""
    INSERT INTO download_totals_monthly AS o (tenant_id, scope_id, month, downloads)
    SELECT :t, {_SCOPE}, :month, sum(d.sign)
    FROM download_delta d
    GROUP BY GROUPING SETS ((d.episode_id), (d.podcast_id), ())
    HAVING ({_IN_SCOPE}) AND sum(d.sign) <> 0
    ON CONFLICT (tenant_id, scope_id, month) DO UPDATE SET downloads = o.downloads + EXCLUDED.downloads
    """,
    "DELETE FROM download_totals_monthly WHERE tenant_id = :t AND month = :month AND downloads = 0",
    "DROP TABLE download_delta",
]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


async def match_late(
    session: AsyncSession, tenant_id: uuid.UUID, start: datetime, end: datetime, batches: Sequence[int] | None = None
) -> int:
    """Give requests that matched no episode when recorded the episode their URL points at now (an
    episode created after its first downloads); with ``batches``, only those batches' requests. Answers how
    many requests were matched."""
    of_batches = "" if batches is None else "AND batch_id = ANY(CAST(:batches AS bigint[])) "
    params: dict[str, Any] = {"t": tenant_id, "start": start, "end": end, "batches": list(batches or ())}
    unmatched = (
        (
            await session.execute(
                text(
                    "SELECT DISTINCT url FROM download_requests WHERE tenant_id = :t AND requested_at >= :start "
                    f"AND requested_at < :end AND episode_id IS NULL {of_batches}LIMIT 10000"
                ),
                params,
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
            f"AND r.episode_id IS NULL AND r.url = m.url {of_batches.replace('batch_id', 'r.batch_id')}"
        ),
        {**params, "urls": [u for u, _ in pairs], "ids": [i for _, i in pairs]},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def recompute(
    session: AsyncSession, tenant_id: uuid.UUID, days: Iterable[date], taken: Sequence[int] = ()
) -> None:
    """Replace the download rollups of ``days`` with what the recorded requests say now (matching again
    those that matched no episode). ``taken``: the log rows this work answers; the requests of batches whose
    log rows are still pending besides them are left out, for ``add`` to bring when their turn comes.
    Consecutive days are done together: a run of days costs a few statements, not a few per day."""
    for first, last in runs_of_days(days):
        start, end = day_bounds(first)[0], day_bounds(last)[1]
        await match_late(session, tenant_id, start, end)
        params = {
            "t": tenant_id, "first": first, "last": last, "start": start, "end": end, "all": ALL_PODCASTS,
            "taken": list(taken),
        }  # fmt: skip
        for statement in _RECOMPUTE:
            await session.execute(text(statement), params)
        for month in sorted({day.replace(day=1) for day in days_between(first, last)}):
            await sum_month(
                session, tenant_id, month, "download_listeners_daily", "download_totals_monthly", ["downloads"]
            )


async def add(session: AsyncSession, tenant_id: uuid.UUID, day: date, batches: Sequence[int]) -> None:
    """Bring ``day``'s download rollups up to date with the requests of ``batches`` (which they must not
    hold yet): the downloads and listeners of the clients those requests name are worked out again from
    those clients' requests of the day, and the difference is added. Costs what the batches' clients
    cost, whatever the day already holds."""
    start, end = day_bounds(day)
    await match_late(session, tenant_id, start, end, batches)
    params = {
        "t": tenant_id, "day": day, "month": day.replace(day=1), "start": start, "end": end, "all": ALL_PODCASTS,
        "batches": list(batches),
    }  # fmt: skip
    await session.execute(text("DROP TABLE IF EXISTS pg_temp.download_delta"), params)
    await session.execute(text(_DELTA), params)
    for statement in _ADD:
        await session.execute(text(statement), params)


def downloads_query(extra_where: str = "") -> str:
    """The rule-applying query for one day range (used for the raw tail and as the reference)."""
    return _DOWNLOADS.replace("GROUP BY r.episode_id", f"{extra_where} GROUP BY r.episode_id", 1)
