"""Analytics answers: series, summaries, top episodes, breakdowns and launch curves.

Every answer is computed over *buckets*: contiguous instants ``[start, end)`` (an hour, a day, a week or
a month in the caller's time zone, or a whole period for a summary). Where the data come from:

* buckets made of whole UTC days: the daily rollups of each scope (``listener_daily``,
  ``download_listeners_daily``); unique listeners are unions of the days' listener bitmaps (exact);
* buckets made of whole UTC hours (hourly series, zones whose offsets are whole hours): the hourly
  rollups (``listener_hourly``, ``download_hourly``);
* anything else (a zone such as Asia/Kolkata; unique listeners of hours or of days in another zone):
  raw events.

Days with pending rollup invalidations (events accepted since the last refresh, seconds ago) are always
counted from raw events, so answers are current. With ``from_raw=True`` every answer is computed from
raw events alone — the reference the tests compare the rollups with, metric by metric — except IAB
listeners over more than a day, which only the HyperLogLog sketches know (the daily salt hides a client
across days).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from pyroaring import BitMap
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.binary import fetch_binary
from castmetrics.events import rollups
from castmetrics.events.validation import LISTENER_TYPES
from castmetrics.measurement import counting, sketches

ALL = rollups.ALL_PODCASTS
COUNT_METRICS = ("plays", "completes", "skips")
RATIO_METRICS = {"listen_through_rate": ("completes", 4), "avg_listen_seconds": ("listen_seconds", 2)}
LISTENER_METRICS = (*COUNT_METRICS, "unique_listeners", *RATIO_METRICS)
DOWNLOAD_METRICS = ("downloads", "listeners")
METRICS = (*DOWNLOAD_METRICS, *LISTENER_METRICS)
TOP_METRICS = ("downloads", *COUNT_METRICS, *RATIO_METRICS)
INTERVALS = ("hour", "day", "week", "month")
DIMENSIONS = ("country", "app", "device", "device_category")
LAUNCH_WINDOWS = (1, 7, 30, 90)
_COLUMNS = (*rollups.COUNTS, "listen_seconds")  # what listener counts carry, per bucket
_UTC_DAY = "(CAST({} AS timestamp) AT TIME ZONE 'UTC')"


class Unsupported(ValueError):
    """A question the data cannot answer (such as IAB listeners by hour); ``parameter`` names the cause."""

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class Scope:
    kind: str  # episode | podcast | tenant
    tenant_id: uuid.UUID
    id: uuid.UUID | None = None

    @property
    def scope_id(self) -> uuid.UUID:
        """The rollup rows of the scope: its own id, or all zeros for the whole tenant."""
        return self.id if self.id is not None else ALL

    def raw_filter(self, alias: str = "e") -> str:
        if self.kind == "episode":
            return f" AND {alias}.episode_id = :scope_id"
        if self.kind == "podcast":
            return (
                f" AND {alias}.episode_id IN (SELECT id FROM episodes WHERE tenant_id = :t AND podcast_id = :scope_id)"
            )
        return ""

    def episode_filter(self, alias: str = "ep") -> str:
        """The condition on ``episodes`` (alias) that selects the scope's episodes."""
        if self.kind == "episode":
            return f" AND {alias}.id = :scope_id"
        if self.kind == "podcast":
            return f" AND {alias}.podcast_id = :scope_id"
        return ""

    def params(self, **more: Any) -> dict[str, Any]:
        return {"t": self.tenant_id, "scope_id": self.scope_id, **more}


@dataclass(frozen=True)
class Bucket:
    label: datetime  # the bucket's start in the caller's zone
    start: datetime  # UTC
    end: datetime  # UTC, exclusive


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def bucket_start(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if interval == "month":
        return day.replace(day=1)
    return day


def make_buckets(first: date, last: date, zone: ZoneInfo, interval: str) -> list[Bucket]:
    """The buckets of the local days ``first``..``last``: hours, days, ISO weeks or months (a week or a
    month cut by the range is labelled by its own start and counts only the days inside the range)."""
    if interval == "hour":
        moment, end = _midnight(first, zone), _midnight(last + timedelta(days=1), zone)
        hours = []
        while moment < end:
            hours.append(Bucket(moment.astimezone(zone), moment, moment + timedelta(hours=1)))
            moment += timedelta(hours=1)
        return hours
    groups: dict[date, list[date]] = {}
    for day in _days(first, last):
        groups.setdefault(bucket_start(day, interval), []).append(day)
    return [
        Bucket(
            datetime.combine(label, time.min, tzinfo=zone),
            _midnight(days[0], zone),
            _midnight(days[-1] + timedelta(days=1), zone),
        )
        for label, days in groups.items()
    ]


def period(first: date, last: date, zone: ZoneInfo) -> Bucket:
    return Bucket(
        datetime.combine(first, time.min, tzinfo=zone),
        _midnight(first, zone),
        _midnight(last + timedelta(days=1), zone),
    )


def _edges(buckets: Sequence[Bucket]) -> list[datetime]:
    edges = [bucket.start for bucket in buckets] + [buckets[-1].end]
    assert all(a < b for a, b in zip(edges, edges[1:], strict=False)), "buckets must be contiguous"
    return edges


def _mode(edges: Sequence[datetime]) -> str:
    """``day`` when every edge is a UTC midnight, ``hour`` when every edge is a whole UTC hour, else ``raw``."""
    if all(edge.hour == 0 and edge.minute == 0 and edge.second == 0 and edge.microsecond == 0 for edge in edges):
        return "day"
    if all(edge.minute == 0 and edge.second == 0 and edge.microsecond == 0 for edge in edges):
        return "hour"
    return "raw"


def _utc_days(start: datetime, end: datetime) -> tuple[date, date]:
    return start.astimezone(UTC).date(), (end - timedelta(microseconds=1)).astimezone(UTC).date()


def runs(days: Iterable[date]) -> list[list[date]]:
    """Days grouped into runs of consecutive days, so a raw recount of scattered pending days scans
    only their own partitions, not everything between them."""
    grouped: list[list[date]] = []
    for day in sorted(set(days)):
        if grouped and (day - grouped[-1][-1]).days == 1:
            grouped[-1].append(day)
        else:
            grouped.append([day])
    return grouped


def _raw_spans(start: datetime, end: datetime, days: Iterable[date]) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` that fall on the given UTC days, one span per run of days."""
    spans = []
    for run in runs(days):
        lo, hi = max(start, _midnight(run[0], UTC)), min(end, _midnight(run[-1] + timedelta(days=1), UTC))
        if lo < hi:
            spans.append((lo, hi))
    return spans


async def _pending(session: AsyncSession, scope: Scope, start: datetime, end: datetime, kind: str) -> set[date]:
    first, last = _utc_days(start, end)
    return await rollups.pending_days(session, scope.tenant_id, first, last, kind=kind)


# --- listener counts ---------------------------------------------------------------------------------

Key = tuple[int, uuid.UUID | None]  # (bucket index, episode id when counted per episode)
_RAW_COUNTS = ", ".join(f"count(*) FILTER (WHERE e.event_type = '{t}') AS {c}" for c, t in rollups.COUNTS.items())
_RAW_LISTENED = rollups.LISTENED.replace("event_data", "e.event_data")


def _episode_join(scope: Scope, by_episode: bool, alias: str) -> tuple[str, str]:
    """(join, condition) selecting rollup rows: the scope's own rows, or its episodes' rows."""
    if not by_episode:
        return "", f"{alias}.scope_id = :scope_id"
    join = f"JOIN episodes ep ON ep.tenant_id = {alias}.tenant_id AND ep.id = {alias}.scope_id"
    return join, "TRUE" + scope.episode_filter()


def _raw_episode_filter(scope: Scope, by_episode: bool) -> str:
    if by_episode and scope.kind == "tenant":  # episodes that still exist, as in the rollup join
        return " AND e.episode_id IN (SELECT id FROM episodes WHERE tenant_id = :t)"
    return scope.raw_filter()


async def listener_counts(
    session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False, by_episode: bool = False
) -> dict[Key, dict[str, float]]:
    """Events per type and listening time per bucket (and per episode with ``by_episode``)."""
    edges = _edges(buckets)
    start, end = edges[0], edges[-1]
    mode = "raw" if from_raw else _mode(edges)
    out: dict[Key, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_COLUMNS, 0.0))
    raw = text(
        "SELECT width_bucket(e.occurred_at, CAST(:edges AS timestamptz[])) AS b, "
        f"{'e.episode_id' if by_episode else 'NULL'} AS episode, {_RAW_COUNTS}, "
        f"coalesce(sum({_RAW_LISTENED}), 0) AS listen_seconds FROM listener_events e "
        "WHERE e.tenant_id = :t AND e.occurred_at >= :lo AND e.occurred_at < :hi"
        f"{_raw_episode_filter(scope, by_episode)} GROUP BY 1, 2"
    )
    spans = [(start, end)]
    if mode != "raw":
        pending = await _pending(session, scope, start, end, "listener")
        spans = _raw_spans(start, end, pending)
        join, condition = _episode_join(scope, by_episode, "r")
        episode = "r.scope_id" if by_episode else "NULL"
        sums = ", ".join(f"sum(r.{column}) AS {column}" for column in _COLUMNS)
        if mode == "day":
            when = _UTC_DAY.format("r.day")
            query = (
                f"SELECT width_bucket({when}, CAST(:edges AS timestamptz[])) AS b, {episode} AS episode, {sums} "
                f"FROM listener_daily r {join} WHERE r.tenant_id = :t AND {condition} "
                "AND r.day >= :first AND r.day <= :last AND NOT (r.day = ANY(:pending)) GROUP BY 1, 2"
            )
        else:
            query = (
                f"SELECT width_bucket(r.hour, CAST(:edges AS timestamptz[])) AS b, {episode} AS episode, {sums} "
                f"FROM listener_hourly r {join} WHERE r.tenant_id = :t AND {condition} "
                "AND r.hour >= :lo AND r.hour < :hi "
                "AND NOT ((r.hour AT TIME ZONE 'UTC')::date = ANY(:pending)) GROUP BY 1, 2"
            )
        first, last = _utc_days(start, end)
        params = scope.params(edges=edges, lo=start, hi=end, first=first, last=last, pending=sorted(pending))
        for row in await session.execute(text(query), params):
            _add(out[(row.b - 1, row.episode)], row)
    for lo, hi in spans:
        for row in await session.execute(raw, scope.params(edges=edges, lo=lo, hi=hi)):
            _add(out[(row.b - 1, row.episode)], row)
    return out


def _add(into: dict[str, float], row: Any) -> None:
    for column in _COLUMNS:
        into[column] += float(getattr(row, column) or 0)


def listener_value(metric: str, counts: dict[str, float] | None) -> float | None:
    """A count metric or a ratio (over plays; null without plays) from a bucket's counts."""
    counts = counts or dict.fromkeys(_COLUMNS, 0.0)
    if metric in RATIO_METRICS:
        numerator, digits = RATIO_METRICS[metric]
        plays = counts["plays"]
        return round(counts[numerator] / plays, digits) if plays else None
    return int(counts[metric])


# --- unique listeners (distinct listener_id of listener events) -------------------------------------


async def unique_listeners(
    session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False
) -> list[int]:
    """Distinct listeners per bucket, exact: unions of the days' bitmaps, or raw events."""
    edges = _edges(buckets)
    start, end = edges[0], edges[-1]
    if from_raw or _mode(edges) != "day":
        rows = await session.execute(
            text(
                "SELECT width_bucket(e.occurred_at, CAST(:edges AS timestamptz[])) AS b, "
                "count(DISTINCT e.listener_id) AS n FROM listener_events e "
                "WHERE e.tenant_id = :t AND e.occurred_at >= :lo AND e.occurred_at < :hi"
                f"{scope.raw_filter()} GROUP BY 1"
            ),
            scope.params(edges=edges, lo=start, hi=end),
        )
        values = {row.b - 1: int(row.n) for row in rows}
        return [values.get(index, 0) for index in range(len(buckets))]
    first, last = _utc_days(start, end)
    pending = await _pending(session, scope, start, end, "listener")
    counts = [0] * len(buckets)
    sets: dict[int, list[BitMap]] = defaultdict(list)
    if all(bucket.end - bucket.start == timedelta(days=1) for bucket in buckets):
        rows = await session.execute(
            text(
                "SELECT day, unique_listeners FROM listener_daily WHERE tenant_id = :t AND scope_id = :scope_id "
                "AND day >= :first AND day <= :last AND NOT (day = ANY(:pending))"
            ),
            scope.params(first=first, last=last, pending=sorted(pending)),
        )
        position = {bucket.start.date(): n for n, bucket in enumerate(buckets)}
        for row in rows:
            counts[position[row.day]] = int(row.unique_listeners)
    else:
        # Whole months without pending days come from the monthly bitmaps (podcasts and the tenant),
        # every other day from its daily bitmap.
        months: dict[date, int] = {}
        days: dict[date, int] = {}
        for n, bucket in enumerate(buckets):
            day, bucket_last = _utc_days(bucket.start, bucket.end)
            while day <= bucket_last:
                month_end = (day.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
                whole = scope.kind != "episode" and day.day == 1 and month_end <= bucket_last
                if whole and not any(day <= p <= month_end for p in pending):
                    months[day] = n
                    day = month_end + timedelta(days=1)
                    continue
                if day not in pending:
                    days[day] = n
                day += timedelta(days=1)
        params = scope.params(months=sorted(months), days=sorted(days))
        query = (
            "SELECT true, month, listeners FROM listener_monthly WHERE tenant_id = %(t)s "
            "AND scope_id = %(scope_id)s AND month = ANY(CAST(%(months)s AS date[])) UNION ALL "
            "SELECT false, day, listeners FROM listener_daily WHERE tenant_id = %(t)s AND scope_id = %(scope_id)s "
            "AND day = ANY(CAST(%(days)s AS date[]))"
        )
        for monthly, day, bitmap in await fetch_binary(session, query, params):
            sets[(months if monthly else days)[day]].append(BitMap.deserialize(bitmap))
    unkeyed: dict[int, set[str]] = defaultdict(set)
    keyed: dict[int, list[int]] = defaultdict(list)
    for lo, hi in _raw_spans(start, end, pending):  # the raw tail: numbered listeners join the bitmaps
        rows = await session.execute(
            text(
                "SELECT x.b, x.listener, (SELECT k.key FROM listener_keys k WHERE k.tenant_id = :t "
                "AND k.listener_id = x.listener) AS key FROM (SELECT DISTINCT "
                "width_bucket(e.occurred_at, CAST(:edges AS timestamptz[])) AS b, e.listener_id AS listener "
                f"FROM listener_events e WHERE e.tenant_id = :t AND e.occurred_at >= :lo AND e.occurred_at < :hi"
                f"{scope.raw_filter()}) x"
            ),
            scope.params(edges=edges, lo=lo, hi=hi),
        )
        for row in rows:
            if row.key is None:
                unkeyed[row.b - 1].add(row.listener)
            else:
                keyed[row.b - 1].append(row.key)
    for index, keys in keyed.items():
        sets[index].append(BitMap(keys))
    for index, parts in sets.items():
        counts[index] = len(BitMap.union(*parts)) if len(parts) > 1 else len(parts[0])
    for index, listeners in unkeyed.items():
        counts[index] += len(listeners)
    return counts


# --- downloads and IAB listeners (prefix requests) ----------------------------------------------------


async def _raw_downloads(
    session: AsyncSession, scope: Scope, lo: datetime, hi: datetime, select: str, group: str,
    where: str | None = None, **params: Any,
) -> Any:  # fmt: skip
    """Rule-counted downloads whose first request falls in ``[lo, hi)``: the rules need whole UTC days."""
    first, last = _utc_days(lo, hi)
    start, end = _midnight(first, UTC), _midnight(last + timedelta(days=1), UTC)
    inner = counting.downloads_query(scope.raw_filter("r") if where is None else where)
    query = f"SELECT {select} FROM ({inner}) d WHERE d.first_at >= :lo AND d.first_at < :hi GROUP BY {group}"
    return await session.execute(text(query), scope.params(start=start, end=end, lo=lo, hi=hi, **params))


async def download_counts(
    session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False, by_episode: bool = False
) -> dict[Key, int]:
    """IAB downloads per bucket (and per episode with ``by_episode``); a download belongs to the instant
    of its first request."""
    edges = _edges(buckets)
    start, end = edges[0], edges[-1]
    mode = "raw" if from_raw else _mode(edges)
    out: dict[Key, int] = defaultdict(int)
    spans = [(start, end)]
    if mode != "raw":
        pending = await _pending(session, scope, start, end, "download")
        spans = _raw_spans(start, end, pending)
        join, condition = _episode_join(scope, by_episode, "r")
        episode = "r.scope_id" if by_episode else "NULL"
        if mode == "day":
            table, when, where = (
                "download_listeners_daily",
                _UTC_DAY.format("r.day"),
                "r.day >= :first AND r.day <= :last",
            )
            skip = "r.day"
        else:
            table, when, where = "download_hourly", "r.hour", "r.hour >= :lo AND r.hour < :hi"
            skip = "(r.hour AT TIME ZONE 'UTC')::date"
        first, last = _utc_days(start, end)
        rows = await session.execute(
            text(
                f"SELECT width_bucket({when}, CAST(:edges AS timestamptz[])) AS b, {episode} AS episode, "
                f"sum(r.downloads) AS n FROM {table} r {join} WHERE r.tenant_id = :t AND {condition} AND {where} "
                f"AND NOT ({skip} = ANY(:pending)) GROUP BY 1, 2"
            ),
            scope.params(edges=edges, lo=start, hi=end, first=first, last=last, pending=sorted(pending)),
        )
        for row in rows:
            out[(row.b - 1, row.episode)] += int(row.n)
    episode = "d.episode_id" if by_episode else "NULL"
    where = _raw_episode_filter(scope, by_episode).replace("e.episode_id", "r.episode_id")
    for lo, hi in spans:
        rows = await _raw_downloads(
            session, scope, lo, hi,
            f"width_bucket(d.first_at, CAST(:edges AS timestamptz[])) AS b, {episode} AS episode, count(*) AS n",
            "1, 2", where, edges=edges,
        )  # fmt: skip
        for row in rows:
            out[(row.b - 1, row.episode)] += int(row.n)
    return out


async def iab_listeners(
    session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False
) -> tuple[list[int], bool]:
    """IAB listeners (distinct clients with a download) per bucket of whole UTC days: exact for a day,
    a HyperLogLog estimate (relative standard error 0.4%) for longer buckets; answers (values, estimate)."""
    edges = _edges(buckets)
    if _mode(edges) != "day":
        raise Unsupported(
            "listeners are counted per UTC day (IAB): use tz=UTC and an interval of a day or longer", "tz"
        )
    values = [0] * len(buckets)
    estimate = False
    single = [index for index, bucket in enumerate(buckets) if bucket.end - bucket.start == timedelta(days=1)]
    for index, bucket in enumerate(buckets):
        if index not in single:
            days = _days(*_utc_days(bucket.start, bucket.end))
            values[index] = round(await sketches.estimate(session, scope.tenant_id, scope.scope_id, days))
            estimate = True
    if not single:
        return values, estimate
    days = [buckets[index].start.date() for index in single]
    pending: set[date] = set(days) if from_raw else await _pending(session, scope, edges[0], edges[-1], "download")
    by_day = {buckets[index].start.date(): index for index in single}
    rows = await session.execute(
        text(
            "SELECT day, listeners FROM download_listeners_daily WHERE tenant_id = :t AND scope_id = :scope_id "
            "AND day = ANY(:days) AND NOT (day = ANY(:pending))"
        ),
        scope.params(days=days, pending=sorted(pending)),
    )
    for row in rows:
        values[by_day[row.day]] = int(row.listeners)
    for lo, hi in _raw_spans(edges[0], edges[-1], pending & set(days)):
        rows = await _raw_downloads(
            session,
            scope,
            lo,
            hi,
            "(d.first_at AT TIME ZONE 'UTC')::date AS day, count(DISTINCT d.client_hash) AS n",
            "1",
        )
        for row in rows:
            if row.day in by_day:
                values[by_day[row.day]] = int(row.n)
    return values, estimate


# --- the answers --------------------------------------------------------------------------------------


async def series(
    session: AsyncSession, scope: Scope, metric: str, buckets: Sequence[Bucket], *, from_raw: bool = False
) -> tuple[list[float | None], bool]:
    """``metric`` per bucket; answers (values, whether they are estimates)."""
    if metric == "downloads":
        counts = await download_counts(session, scope, buckets, from_raw=from_raw)
        return [counts.get((index, None), 0) for index in range(len(buckets))], False
    if metric == "listeners":
        values, estimate = await iab_listeners(session, scope, buckets, from_raw=from_raw)
        return list(values), estimate
    if metric == "unique_listeners":
        return list(await unique_listeners(session, scope, buckets, from_raw=from_raw)), False
    per_bucket = await listener_counts(session, scope, buckets, from_raw=from_raw)
    return [listener_value(metric, per_bucket.get((index, None))) for index in range(len(buckets))], False


def change(value: float | None, previous: float | None) -> float | None:
    """Relative change against the previous period; null when there is nothing to compare with."""
    if value is None or not previous:
        return None
    return round((value - previous) / previous, 4)


async def summary(
    session: AsyncSession, scope: Scope, first: date, last: date, zone: ZoneInfo, *, from_raw: bool = False,
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:  # fmt: skip
    """Totals of ``metrics`` (default: every metric) over the local days ``first``..``last`` and over the
    period of the same length just before it, with the relative change."""
    length = (last - first).days + 1
    before = (first - timedelta(days=length), first - timedelta(days=1))
    buckets = [period(*before, zone), period(first, last, zone)]
    wanted = [metric for metric in METRICS if metric in metrics]
    found: dict[str, tuple[list[Any], bool]] = {}
    if any(metric in (*COUNT_METRICS, *RATIO_METRICS) for metric in wanted):
        counts = await listener_counts(session, scope, buckets, from_raw=from_raw)
        for metric in (*COUNT_METRICS, *RATIO_METRICS):
            found[metric] = ([listener_value(metric, counts.get((index, None))) for index in (0, 1)], False)
    if "downloads" in wanted:
        downloads = await download_counts(session, scope, buckets, from_raw=from_raw)
        found["downloads"] = ([downloads.get((0, None), 0), downloads.get((1, None), 0)], False)
    if "unique_listeners" in wanted:
        found["unique_listeners"] = (list(await unique_listeners(session, scope, buckets, from_raw=from_raw)), False)
    if "listeners" in wanted:
        try:
            found["listeners"] = await iab_listeners(session, scope, buckets, from_raw=from_raw)
        except Unsupported:
            found["listeners"] = ([None, None], False)  # IAB listeners exist for UTC days only
    return {
        "from": first,
        "to": last,
        "previous_from": before[0],
        "previous_to": before[1],
        "tz": zone.key,
        "metrics": [
            {
                "metric": metric,
                "value": found[metric][0][1],
                "previous": found[metric][0][0],
                "change": change(found[metric][0][1], found[metric][0][0]),
                "estimate": found[metric][1],
            }
            for metric in wanted
        ],
    }


async def top_episodes(
    session: AsyncSession, scope: Scope, metric: str, first: date, last: date, zone: ZoneInfo, limit: int,
    *, from_raw: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """The scope's episodes ranked by ``metric`` over the period (ratios among episodes with plays)."""
    if metric not in TOP_METRICS:
        raise Unsupported(f"top episodes rank by one of {', '.join(TOP_METRICS)}", "metric")
    buckets = [period(first, last, zone)]
    values: dict[uuid.UUID, float] = {}
    if metric == "downloads":
        for (_, episode), n in (
            await download_counts(session, scope, buckets, from_raw=from_raw, by_episode=True)
        ).items():
            if episode is not None and n:
                values[episode] = n
    else:
        counts = await listener_counts(session, scope, buckets, from_raw=from_raw, by_episode=True)
        for (_, episode), per_episode in counts.items():
            value = listener_value(metric, per_episode)
            if episode is not None and value:
                values[episode] = value
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], str(kv[0])))[:limit]
    if not ranked:
        return []
    rows = await session.execute(
        text("SELECT id, podcast_id, title, published_at FROM episodes WHERE tenant_id = :t AND id = ANY(:ids)"),
        {"t": scope.tenant_id, "ids": [episode for episode, _ in ranked]},
    )
    episodes = {row.id: row for row in rows}
    return [
        {
            "rank": rank,
            "episode_id": episode,
            "podcast_id": episodes[episode].podcast_id,
            "title": episodes[episode].title,
            "published_at": episodes[episode].published_at,
            "value": value,
        }
        for rank, (episode, value) in enumerate(ranked, 1)
        if episode in episodes
    ]


async def event_type_breakdown(
    session: AsyncSession,
    scope: Scope,
    first: date,
    last: date,
    zone: ZoneInfo | None = None,
    *,
    from_raw: bool = False,
) -> list[dict[str, Any]]:
    """Listener events per type in the period, most frequent first."""
    counts = (
        await listener_counts(session, scope, [period(first, last, zone or ZoneInfo("UTC"))], from_raw=from_raw)
    ).get((0, None), {})
    totals = {event_type: int(counts.get(column, 0)) for column, event_type in rollups.COUNTS.items()}
    assert set(totals) == set(LISTENER_TYPES)
    ranked = sorted(((key, count) for key, count in totals.items() if count), key=lambda kv: (-kv[1], kv[0]))
    return [{"key": key, "count": count} for key, count in ranked]


async def download_breakdown(
    session: AsyncSession, scope: Scope, by: str, first: date, last: date, *, from_raw: bool = False
) -> list[dict[str, Any]]:
    """Downloads and listeners per country, app, device or device category over UTC days, most downloads
    first. Listeners per key add up each day's exact listeners (a client counts once a day)."""
    if by not in DIMENSIONS:
        raise ValueError(by)
    utc = ZoneInfo("UTC")
    whole = period(first, last, utc)
    pending = (
        set(_days(first, last)) if from_raw else await _pending(session, scope, whole.start, whole.end, "download")
    )
    totals: dict[str, list[int]] = {}
    if not from_raw:
        rows = await session.execute(
            text(
                "SELECT key, sum(downloads) AS downloads, sum(listeners) AS listeners FROM download_breakdown_daily "
                "WHERE tenant_id = :t AND scope_id = :scope_id AND dimension = :by AND day BETWEEN :a AND :b "
                "AND NOT (day = ANY(:pending)) GROUP BY 1"
            ),
            scope.params(by=by, a=first, b=last, pending=sorted(pending)),
        )
        for row in rows:
            totals[row.key] = [int(row.downloads), int(row.listeners)]
    for lo, hi in _raw_spans(whole.start, whole.end, pending):
        rows = await _raw_downloads(
            session, scope, lo, hi,
            f"d.{by} AS key, count(*) AS downloads, "
            "count(DISTINCT ((d.first_at AT TIME ZONE 'UTC')::date, d.client_hash)) AS listeners",
            "1",
        )  # fmt: skip
        for row in rows:
            entry = totals.setdefault(row.key or counting.UNKNOWN, [0, 0])
            entry[0] += int(row.downloads)
            entry[1] += int(row.listeners)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [{"key": key, "downloads": value[0], "listeners": value[1]} for key, value in ranked]


# --- launch curves ------------------------------------------------------------------------------------

_LAUNCH_SUMS = ", ".join(
    f"sum(h.downloads) FILTER (WHERE h.hour < date_trunc('hour', ep.published_at, 'UTC') + interval '{n} days') "
    f"AS day_{n}"
    for n in LAUNCH_WINDOWS
)


async def launch_curves(
    session: AsyncSession, scope: Scope, now: datetime, *, from_raw: bool = False
) -> dict[str, Any]:
    """Downloads in the first 1, 7, 30 and 90 days (24-hour periods from the hour of publication) of
    each published episode of the scope, newest first, and their average. A window that has not
    ended yet is null and left out of the average."""
    longest = max(LAUNCH_WINDOWS)
    episodes = (
        await session.execute(
            text(
                "SELECT ep.id, ep.title, ep.published_at, date_trunc('hour', ep.published_at, 'UTC') AS launched "
                f"FROM episodes ep WHERE ep.tenant_id = :t AND ep.published_at IS NOT NULL{scope.episode_filter()} "
                "AND ep.published_at <= :now ORDER BY ep.published_at DESC, ep.id"
            ),
            scope.params(now=now),
        )
    ).all()
    sums: dict[uuid.UUID, list[int]] = {row.id: [0] * len(LAUNCH_WINDOWS) for row in episodes}
    if episodes:
        first = min(row.launched for row in episodes)
        last = min(max(row.launched for row in episodes) + timedelta(days=longest), now + timedelta(hours=1))
        span = Bucket(first, first, last)
        pending = (
            set(_days(*_utc_days(first, last))) if from_raw else await _pending(session, scope, first, last, "download")
        )
        if not from_raw:
            rows = await session.execute(
                text(
                    f"SELECT ep.id, {_LAUNCH_SUMS} FROM episodes ep JOIN download_hourly h "
                    "ON h.tenant_id = ep.tenant_id AND h.scope_id = ep.id "
                    "AND h.hour >= date_trunc('hour', ep.published_at, 'UTC') "
                    f"AND h.hour < date_trunc('hour', ep.published_at, 'UTC') + interval '{longest} days' "
                    f"WHERE ep.tenant_id = :t AND ep.published_at IS NOT NULL{scope.episode_filter()} "
                    "AND NOT ((h.hour AT TIME ZONE 'UTC')::date = ANY(:pending)) GROUP BY ep.id"
                ),
                scope.params(pending=sorted(pending)),
            )
            for row in rows:
                if row.id in sums:
                    sums[row.id] = [int(getattr(row, f"day_{n}") or 0) for n in LAUNCH_WINDOWS]
        launched = {row.id: row.launched for row in episodes}
        for lo, hi in _raw_spans(span.start, span.end, pending):
            rows = await _raw_downloads(
                session,
                scope,
                lo,
                hi,
                "d.episode_id, date_trunc('hour', d.first_at, 'UTC') AS hour, count(*) AS n",
                "1, 2",
            )
            for row in rows:
                if row.episode_id not in launched:
                    continue
                age = row.hour - launched[row.episode_id]
                for index, n in enumerate(LAUNCH_WINDOWS):
                    if timedelta(0) <= age < timedelta(days=n):
                        sums[row.episode_id][index] += int(row.n)
    items = []
    for row in episodes:
        item: dict[str, Any] = {"episode_id": row.id, "title": row.title, "published_at": row.published_at}
        for index, n in enumerate(LAUNCH_WINDOWS):
            item[f"day_{n}"] = sums[row.id][index] if row.launched + timedelta(days=n) <= now else None
        items.append(item)
    average: dict[str, Any] = {}
    for n in LAUNCH_WINDOWS:
        done = [item[f"day_{n}"] for item in items if item[f"day_{n}"] is not None]
        average[f"day_{n}"] = round(sum(done) / len(done), 1) if done else None
        average[f"episodes_{n}"] = len(done)
    return {"windows": list(LAUNCH_WINDOWS), "average": average, "episodes": items}
