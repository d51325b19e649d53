"""Where analytics numbers come from: a reader per source (daily rollups, hourly rollups, raw events).

``split`` is the one place a range is divided into settled days, read from a rollup, and pending days
(events accepted since the last refresh, seconds ago), recounted from raw events so answers are current:
every rollup reader leaves the pending days out and the raw reader counts exactly them. Readers only
read; how their rows add up to an answer is the measures' business (``metrics.py``).
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any, ClassVar

from pyroaring import BitMap
from sqlalchemy import Result, text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.binary import fetch_binary
from castmetrics.events import rollups
from castmetrics.measurement import counting, sketches

ALL = rollups.ALL_PODCASTS
Key = tuple[int, str | None]  # (bucket index, the episode id as text when counted per episode)
Span = tuple[datetime, datetime]  # [lo, hi) in UTC


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

    def raw_filter(self, alias: str = "e", *, by_episode: bool = False) -> str:
        """The condition on raw rows (alias) that selects the scope's events."""
        if by_episode and self.kind == "tenant":  # episodes that still exist, as in the rollup join
            return f" AND {alias}.episode_id IN (SELECT id FROM episodes WHERE tenant_id = :t)"
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

    def rollup_rows(self, alias: str, *, by_episode: bool) -> str:
        """The condition selecting rollup rows (alias): the scope's own rows, or (``by_episode``) the rows
        of every scope of the tenant, which ``episode_rows`` then narrows to the scope's episodes."""
        return "TRUE" if by_episode else f"{alias}.scope_id = :scope_id"

    def episode_rows(self, sums: str, *, by_episode: bool) -> str:
        """The FROM item ``x`` over ``sums`` (a query of rows ``b``, ``episode`` (a scope id), columns): with
        ``by_episode``, only the rows of the scope's existing episodes, joined once their rows are summed
        (some 5,000 episodes probed, not every one of their daily rows)."""
        if not by_episode:
            return f"({sums}) x"
        return f"({sums}) x JOIN episodes ep ON ep.tenant_id = :t AND ep.id = x.episode{self.episode_filter()}"

    def params(self, **more: Any) -> dict[str, Any]:
        return {"t": self.tenant_id, "scope_id": self.scope_id, **more}


@dataclass(frozen=True)
class Bucket:
    label: datetime  # the bucket's start in the caller's zone
    start: datetime  # UTC
    end: datetime  # UTC, exclusive

    @property
    def one_day(self) -> bool:
        return self.end - self.start == timedelta(days=1)


def midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def utc_days(start: datetime, end: datetime) -> tuple[date, date]:
    """The first and last UTC day that ``[start, end)`` touches."""
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


def array_literal(instants: Iterable[datetime]) -> str:
    """Instants as the text of a ``timestamptz[]`` (ISO 8601 holds no comma, quote or brace): cheaper to
    bind than a list psycopg escapes element by element."""
    return "{" + ",".join(instant.isoformat() for instant in instants) + "}"


def bucket_edges(buckets: Sequence[Bucket]) -> list[datetime]:
    edges = [bucket.start for bucket in buckets] + [buckets[-1].end]
    assert all(a < b for a, b in zip(edges, edges[1:], strict=False)), "buckets must be contiguous"
    return edges


# --- choosing a source -------------------------------------------------------------------------------


class Source(StrEnum):
    DAILY = "daily rollup"  # rows per scope and UTC day
    HOURLY = "hourly rollup"  # rows per scope and UTC hour
    RAW = "raw events"


def fitting(edges: Sequence[datetime]) -> tuple[Source, ...]:
    """The rollups whose rows fall wholly inside buckets with these edges, coarsest first: daily rows
    when every edge is a UTC midnight, hourly rows when every edge is a whole UTC hour."""
    if any(edge.minute or edge.second or edge.microsecond for edge in edges):
        return ()  # a zone such as Asia/Kolkata
    return (Source.DAILY, Source.HOURLY) if not any(edge.hour for edge in edges) else (Source.HOURLY,)


def choose(offered: Sequence[Source], edges: Sequence[datetime], *, from_raw: bool) -> Source | None:
    """The source to read buckets with these edges from: raw events for the reference (``from_raw``),
    else the coarsest offered rollup that fits, else raw events; None when no offered source can."""
    if from_raw and Source.RAW in offered:
        return Source.RAW
    return next((source for source in (*fitting(edges), Source.RAW) if source in offered), None)


# --- settled and pending days ------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """``[start, end)`` divided by UTC day: pending days are recounted from raw events, the others
    (settled) are read from rollups; with ``from_rollups`` False every day is pending."""

    start: datetime
    end: datetime
    pending: frozenset[date]
    from_rollups: bool

    def raw_spans(self, within: Iterable[date] | None = None) -> list[Span]:
        """The parts of ``[start, end)`` on pending days (of ``within`` only, if given), one per run of days."""
        days = self.pending if within is None else self.pending & set(within)
        spans = []
        for run in runs(days):
            lo, hi = max(self.start, midnight(run[0], UTC)), min(self.end, midnight(run[-1] + timedelta(days=1), UTC))
            if lo < hi:
                spans.append((lo, hi))
        return spans

    def params(self, scope: Scope, **more: Any) -> dict[str, Any]:
        """What a rollup reader binds: the range (``lo``/``hi``, UTC days ``first``/``last``) and the pending days."""
        first, last = utc_days(self.start, self.end)
        return scope.params(lo=self.start, hi=self.end, first=first, last=last, pending=sorted(self.pending), **more)


async def split(
    session: AsyncSession,
    scope: Scope,
    start: datetime,
    end: datetime,
    events: str,
    *,
    everything_pending: bool = False,
) -> Split:
    """``[start, end)`` as the rollups of ``events`` (listener or download) know it now; with
    ``everything_pending`` (raw events alone: the reference, or no rollup fits) no day is settled."""
    first, last = utc_days(start, end)
    if everything_pending:
        return Split(start, end, frozenset(days_between(first, last)), from_rollups=False)
    pending = await rollups.pending_days(session, scope.tenant_id, first, last, kind=events)
    return Split(start, end, frozenset(pending), from_rollups=True)


# --- what the sources store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRows:
    """Raw rows as the raw reader counts them, each at one instant."""

    at: str  # the row's instant
    episode: str  # the row's episode
    scope_alias: str  # the alias the scope's filter names
    rows: Callable[[str], str]  # "relation WHERE …" given the scope's filter; binds :lo, :hi (and :start, :end)


LISTENER_EVENTS = RawRows(
    "e.occurred_at",
    "e.episode_id",
    "e",
    lambda where: f"listener_events e WHERE e.tenant_id = :t AND e.occurred_at >= :lo AND e.occurred_at < :hi{where}",
)
# Rule-counted downloads (IAB): the rules need whole UTC days (:start, :end) around the span, and a
# download belongs to the instant of its first request.
DOWNLOADS = RawRows(
    "d.first_at",
    "d.episode_id",
    "r",
    lambda where: f"({counting.downloads_query(where)}) d WHERE d.first_at >= :lo AND d.first_at < :hi",
)


@dataclass(frozen=True, eq=False)
class Tallies:
    """Additive counts of one kind of traffic, stored alike by every source, so a bucket's total is the
    sum of its settled rollup rows and its pending raw rows."""

    events: str  # listener | download: whose rollup invalidations make a day pending
    columns: tuple[str, ...]
    tables: Mapping[Source, str]  # the rollup table of each rollup source
    raw: RawRows
    raw_sums: str  # the columns, counted from raw rows
    monthly: str | None = None  # the monthly totals of the daily rollup's rows, per scope


_RAW_COUNTS = ", ".join(f"count(*) FILTER (WHERE e.event_type = '{t}') AS {c}" for c, t in rollups.COUNTS.items())
_RAW_LISTENED = rollups.LISTENED.replace("event_data", "e.event_data")
LISTENING = Tallies(
    "listener",
    (*rollups.COUNTS, "listen_seconds"),  # every event type, so a breakdown by type reads the same tallies
    {Source.DAILY: "listener_daily", Source.HOURLY: "listener_hourly"},
    LISTENER_EVENTS,
    f"{_RAW_COUNTS}, coalesce(sum({_RAW_LISTENED}), 0) AS listen_seconds",
    monthly="listener_totals_monthly",
)
DOWNLOADING = Tallies(
    "download",
    ("downloads",),
    {Source.DAILY: "download_listeners_daily", Source.HOURLY: "download_hourly"},
    DOWNLOADS,
    "count(*) AS downloads",
    monthly="download_totals_monthly",
)


# --- the readers --------------------------------------------------------------------------------------


@dataclass
class MonthPlan:
    """How settled daily tallies are read with monthly totals: per bucket (0-based), the months read whole
    and the days read one by one, each day added (+1) or taken away (-1: a day of a month read whole that
    lies outside the bucket)."""

    months: list[tuple[date, int]] = field(default_factory=list)  # (month, bucket)
    days: list[tuple[date, int, int]] = field(default_factory=list)  # (day, bucket, sign)


def plan_months(edges: Sequence[datetime], pending: Iterable[date]) -> MonthPlan | None:
    """Per bucket of these UTC-midnight edges and month it touches: a month without pending days is read
    as its total when the bucket holds it whole, or holds more of its days than it leaves out (then the
    days left out are taken away); otherwise its days in the bucket are read one by one. So a 90-day
    range reads at most about a month of daily rows. None when no month is read whole."""
    if all((hi - lo).days <= 14 for lo, hi in itertools.pairwise(edges)):
        return None  # no bucket holds more of a month (28 days at least) than it leaves out
    pending_months = {day.replace(day=1) for day in pending}
    pending = set(pending)
    plan = MonthPlan()
    for bucket, (lo, hi) in enumerate(itertools.pairwise(edges)):
        first, end = lo.date(), hi.date()  # [first, end)
        month = first.replace(day=1)
        while month < end:
            following = (month + timedelta(days=32)).replace(day=1)
            start, stop = max(first, month), min(end, following)  # the bucket's part of the month: [start, stop)
            inside = (stop - start).days
            if month not in pending_months and (following - month).days - inside < inside:
                plan.months.append((month, bucket))
                plan.days += [(day, bucket, -1) for day in days_between(month, start - timedelta(days=1))]
                plan.days += [(day, bucket, -1) for day in days_between(stop, following - timedelta(days=1))]
            else:
                plan.days += [
                    (day, bucket, 1) for day in days_between(start, stop - timedelta(days=1)) if day not in pending
                ]
            month = following
    return plan if plan.months else None


class Rollup:
    """What the daily and hourly rollups share: additive columns per scope and period."""

    source: ClassVar[Source]
    at: ClassVar[str]  # the instant a row (alias r) begins
    within: ClassVar[str]  # rows inside the split's range
    day: ClassVar[str]  # a row's UTC day, to leave pending days out

    async def tallies(
        self, session: AsyncSession, scope: Scope, tallies: Tallies, edges: Sequence[datetime], split: Split,
        *, by_episode: bool,
    ) -> Result[Any]:  # fmt: skip
        """The settled rows' sums per bucket (and per episode): rows ``b`` (1-based), ``episode``, columns."""
        condition = scope.rollup_rows("r", by_episode=by_episode)
        # as float8, which the caller adds up as floats anyway: cheaper to read than numeric (exact for counts)
        sums = ", ".join(f"CAST(sum(r.{column}) AS float8) AS {column}" for column in tallies.columns)
        # the episode as text, after grouping: cheaper to read by the thousand than UUIDs
        rows = scope.episode_rows(
            f"SELECT width_bucket({self.at}, CAST(:edges AS timestamptz[])) AS b, "
            f"{'r.scope_id' if by_episode else 'NULL::uuid'} AS episode, {sums} FROM {tallies.tables[self.source]} r "
            f"WHERE r.tenant_id = :t AND {condition} AND {self.within} "
            f"AND NOT ({self.day} = ANY(:pending)) GROUP BY 1, 2",
            by_episode=by_episode,
        )
        columns = ", ".join(f"x.{c}" for c in tallies.columns)
        query = f"SELECT x.b, CAST(x.episode AS text) AS episode, {columns} FROM {rows}"
        return await session.execute(text(query), split.params(scope, edges=array_literal(edges)))


class DailyRollup(Rollup):
    """Rows per scope and UTC day (the tallies, listener bitmaps, exact IAB listeners, breakdowns), the
    monthly listener bitmaps, and the daily download sketches."""

    source = Source.DAILY
    at = "(CAST(r.day AS timestamp) AT TIME ZONE 'UTC')"
    within = "r.day >= :first AND r.day <= :last"
    day = "r.day"

    async def tallies(
        self, session: AsyncSession, scope: Scope, tallies: Tallies, edges: Sequence[datetime], split: Split,
        *, by_episode: bool,
    ) -> Result[Any]:  # fmt: skip
        """The settled rows' sums per bucket (and per episode), months read as their totals where that reads
        fewer rows (``plan_months``), the other days from the daily rows."""
        plan = plan_months(edges, split.pending) if tallies.monthly else None
        if plan is None:
            return await super().tallies(session, scope, tallies, edges, split, by_episode=by_episode)
        parts = []
        for alias, table, pick, sign in (
            ("r", tallies.tables[self.source],
             "JOIN unnest(CAST(:days AS date[]), CAST(:day_buckets AS int[]), CAST(:signs AS int[])) "
             "AS s(day, b, sign) ON r.day = s.day AND r.day = ANY(CAST(:days AS date[]))", "s.sign * "),
            ("m", tallies.monthly,
             "JOIN unnest(CAST(:months AS date[]), CAST(:month_buckets AS int[])) AS s(month, b) "
             "ON m.month = s.month AND m.month = ANY(CAST(:months AS date[]))", ""),
        ):  # fmt: skip
            condition = scope.rollup_rows(alias, by_episode=by_episode)
            sums = ", ".join(f"sum({sign}{alias}.{column}) AS {column}" for column in tallies.columns)
            parts.append(
                f"SELECT s.b + 1 AS b, {f'{alias}.scope_id' if by_episode else 'NULL::uuid'} AS episode, {sums} "
                f"FROM {table} {alias} {pick} WHERE {alias}.tenant_id = :t AND {condition} GROUP BY 1, 2"
            )
        totals = ", ".join(f"CAST(sum(x.{column}) AS float8) AS {column}" for column in tallies.columns)
        rows = scope.episode_rows(" UNION ALL ".join(parts), by_episode=by_episode)
        query = f"SELECT x.b, CAST(x.episode AS text) AS episode, {totals} FROM {rows} GROUP BY x.b, x.episode"
        return await session.execute(
            text(query),
            split.params(
                scope,
                days=[day for day, _, _ in plan.days], day_buckets=[b for _, b, _ in plan.days],
                signs=[sign for _, _, sign in plan.days], months=[month for month, _ in plan.months],
                month_buckets=[b for _, b in plan.months],
            ),
        )  # fmt: skip

    async def day_listeners(self, session: AsyncSession, scope: Scope, split: Split) -> Result[Any]:
        """Distinct listeners of each settled day: rows ``day``, ``unique_listeners``."""
        return await session.execute(
            text(
                "SELECT day, unique_listeners FROM listener_daily WHERE tenant_id = :t AND scope_id = :scope_id "
                "AND day >= :first AND day <= :last AND NOT (day = ANY(:pending))"
            ),
            split.params(scope),
        )

    async def listener_bitmaps(
        self, session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], pending: Iterable[date]
    ) -> dict[int, list[BitMap]]:
        """The bitmaps of listener keys of the buckets' settled days, per bucket: a whole month without
        pending days as its monthly bitmap (podcasts and the tenant have them), every other day its own."""
        pending = set(pending)
        months: dict[date, int] = {}
        days: dict[date, int] = {}
        for n, bucket in enumerate(buckets):
            day, bucket_last = utc_days(bucket.start, bucket.end)
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
        query = (
            "SELECT true, month, listeners, NULL::bytea FROM listener_monthly WHERE tenant_id = %(t)s "
            "AND scope_id = %(scope_id)s AND month = ANY(CAST(%(months)s AS date[])) UNION ALL "
            "SELECT false, day, listeners, recent FROM listener_daily WHERE tenant_id = %(t)s "
            "AND scope_id = %(scope_id)s AND day = ANY(CAST(%(days)s AS date[]))"
        )
        bitmaps: dict[int, list[BitMap]] = defaultdict(list)
        for monthly, day, bitmap, recent in await fetch_binary(
            session, query, scope.params(months=sorted(months), days=sorted(days))
        ):
            found = bitmaps[(months if monthly else days)[day]]
            found.append(BitMap.deserialize(bitmap))
            if recent is not None:  # the listeners the day gained since its bitmap was written whole
                found.append(BitMap.deserialize(recent))
        return bitmaps

    async def day_clients(self, session: AsyncSession, scope: Scope, split: Split, days: Iterable[date]) -> Result[Any]:
        """IAB listeners (distinct clients with a download) of each settled day of ``days``: rows ``day``,
        ``listeners``."""
        return await session.execute(
            text(
                "SELECT day, listeners FROM download_listeners_daily WHERE tenant_id = :t AND scope_id = :scope_id "
                "AND day = ANY(:days) AND NOT (day = ANY(:pending))"
            ),
            split.params(scope, days=sorted(days)),
        )

    async def client_estimate(self, session: AsyncSession, scope: Scope, days: Iterable[date]) -> float:
        """IAB listeners over several days, estimated from the union of the days' HyperLogLog sketches: the
        daily salt hides a client across days, so nothing else, raw events included, can count them."""
        return await sketches.estimate(session, scope.tenant_id, scope.scope_id, days)

    async def breakdown(self, session: AsyncSession, scope: Scope, by: str, split: Split) -> Result[Any]:
        """Downloads and listeners (each day's exact listeners, added up) per key of a dimension over the
        settled days: rows ``key``, ``downloads``, ``listeners``."""
        return await session.execute(
            text(
                "SELECT key, sum(downloads) AS downloads, sum(listeners) AS listeners FROM download_breakdown_daily "
                "WHERE tenant_id = :t AND scope_id = :scope_id AND dimension = :by AND day BETWEEN :first AND :last "
                "AND NOT (day = ANY(:pending)) GROUP BY 1"
            ),
            split.params(scope, by=by),
        )


class HourlyRollup(Rollup):
    """Rows per scope and UTC hour: the tallies of hourly series, zones of whole-hour offsets and launches."""

    source = Source.HOURLY
    at = "r.hour"
    within = "r.hour >= :lo AND r.hour < :hi"
    day = "(r.hour AT TIME ZONE 'UTC')::date"

    async def launch_windows(
        self, session: AsyncSession, scope: Scope, split: Split, windows: Sequence[int]
    ) -> Result[Any]:
        """Settled downloads of each of the scope's published episodes in its first ``n`` days (24-hour
        periods from the hour of publication) for each ``n`` of ``windows``: rows ``id``, ``day_<n>``.
        Whole UTC days come from the episode's daily totals; only the hours of the day of publication from
        its hour on, and of the day each window ends before that hour, come from the hourly rows: a 90-day
        window is at most 90 + 5 × 24 rows an episode, not 2,160."""
        longest = max(windows)
        whole = ", ".join(
            f"coalesce(sum(d.downloads) FILTER (WHERE d.day < e.d0 + {n}), 0) AS whole_{n}" for n in windows
        )
        # The hour ranges read per episode: 0, the day of publication from its hour (when not at midnight),
        # counted in every window; n, the hours of the day window n ends before that hour, in window n only.
        ranges = ", ".join(
            ["(0, e.launched, CASE WHEN e.partial THEN e.d0_end ELSE e.launched END)"]
            + [f"({n}, e.d0_end + interval '{n - 1} days', e.launched + interval '{n} days')" for n in windows]
        )
        hours = ", ".join(f"coalesce(sum(h.downloads) FILTER (WHERE r.n IN (0, {n})), 0) AS hours_{n}" for n in windows)
        sums = ", ".join(f"w.whole_{n} + u.hours_{n} AS day_{n}" for n in windows)
        return await session.execute(
            text(
                f"""
                WITH e AS (
                    SELECT ep.id, l.launched, l.d0, l.d0_end, l.launched > l.d0_start AS partial
                    FROM episodes ep
                    CROSS JOIN LATERAL (
                        SELECT date_trunc('hour', ep.published_at, 'UTC') AS launched,
                               (ep.published_at AT TIME ZONE 'UTC')::date AS d0,
                               date_trunc('day', ep.published_at, 'UTC') AS d0_start,
                               date_trunc('day', ep.published_at, 'UTC') + interval '1 day' AS d0_end
                    ) l
                    WHERE ep.tenant_id = :t AND ep.published_at IS NOT NULL{scope.episode_filter()}
                )
                SELECT e.id, {sums}
                FROM e
                CROSS JOIN LATERAL (
                    SELECT {whole} FROM download_listeners_daily d
                    WHERE d.tenant_id = :t AND d.scope_id = e.id
                      AND d.day >= e.d0 + CASE WHEN e.partial THEN 1 ELSE 0 END AND d.day < e.d0 + {longest}
                      AND NOT (d.day = ANY(:pending))
                ) w
                CROSS JOIN LATERAL (
                    SELECT {hours}
                    FROM (VALUES {ranges}) AS r(n, lo, hi)
                    JOIN download_hourly h ON h.tenant_id = :t AND h.scope_id = e.id AND h.hour >= r.lo
                     AND h.hour < r.hi
                    WHERE NOT ((h.hour AT TIME ZONE 'UTC')::date = ANY(:pending))
                ) u
                """
            ),
            split.params(scope),
        )


class Raw:
    """Raw listener events and rule-counted downloads, over one span of pending days at a time."""

    source = Source.RAW

    async def _select(
        self, session: AsyncSession, scope: Scope, rows: RawRows, span: Span, select: str, group: str,
        where: str | None = None, **params: Any,
    ) -> Result[Any]:  # fmt: skip
        lo, hi = span
        first, last = utc_days(lo, hi)
        start, end = midnight(first, UTC), midnight(last + timedelta(days=1), UTC)
        where = scope.raw_filter(rows.scope_alias) if where is None else where
        query = f"SELECT {select} FROM {rows.rows(where)} GROUP BY {group}"
        return await session.execute(text(query), scope.params(start=start, end=end, lo=lo, hi=hi, **params))

    async def tallies(
        self, session: AsyncSession, scope: Scope, tallies: Tallies, edges: Sequence[datetime], span: Span,
        *, by_episode: bool,
    ) -> Result[Any]:  # fmt: skip
        """The span's rows counted per bucket (and per episode): rows ``b`` (1-based), ``episode``, columns."""
        episode = f"CAST({tallies.raw.episode} AS text)" if by_episode else "NULL"
        return await self._select(
            session, scope, tallies.raw, span,
            f"width_bucket({tallies.raw.at}, CAST(:edges AS timestamptz[])) AS b, {episode} AS episode, "
            f"{tallies.raw_sums}",
            "1, 2", scope.raw_filter(tallies.raw.scope_alias, by_episode=by_episode), edges=array_literal(edges),
        )  # fmt: skip

    async def distinct_listeners(
        self, session: AsyncSession, scope: Scope, edges: Sequence[datetime], span: Span
    ) -> Result[Any]:
        """Distinct listener ids per bucket: rows ``b`` (1-based), ``n``."""
        return await self._select(
            session, scope, LISTENER_EVENTS, span,
            "width_bucket(e.occurred_at, CAST(:edges AS timestamptz[])) AS b, count(DISTINCT e.listener_id) AS n",
            "1", edges=array_literal(edges),
        )  # fmt: skip

    async def listener_ids(
        self, session: AsyncSession, scope: Scope, edges: Sequence[datetime], span: Span
    ) -> Result[Any]:
        """Each bucket's distinct listeners with their bitmap key, null for a listener not numbered yet:
        rows ``b`` (1-based), ``listener``, ``key``."""
        return await session.execute(
            text(
                "SELECT x.b, x.listener, (SELECT k.key FROM listener_keys k WHERE k.tenant_id = :t "
                "AND k.listener_id = x.listener) AS key FROM (SELECT DISTINCT "
                "width_bucket(e.occurred_at, CAST(:edges AS timestamptz[])) AS b, e.listener_id AS listener "
                f"FROM {LISTENER_EVENTS.rows(scope.raw_filter())}) x"
            ),
            scope.params(edges=array_literal(edges), lo=span[0], hi=span[1]),
        )

    async def day_clients(self, session: AsyncSession, scope: Scope, span: Span) -> Result[Any]:
        """IAB listeners (distinct clients with a download) per UTC day: rows ``day``, ``n``."""
        return await self._select(
            session, scope, DOWNLOADS, span,
            "(d.first_at AT TIME ZONE 'UTC')::date AS day, count(DISTINCT d.client_hash) AS n", "1",
        )  # fmt: skip

    async def breakdown(self, session: AsyncSession, scope: Scope, by: str, span: Span) -> Result[Any]:
        """Downloads and listeners (a client counts once a day) per key of a dimension: rows ``key``,
        ``downloads``, ``listeners``."""
        return await self._select(
            session, scope, DOWNLOADS, span,
            f"d.{by} AS key, count(*) AS downloads, "
            "count(DISTINCT ((d.first_at AT TIME ZONE 'UTC')::date, d.client_hash)) AS listeners",
            "1",
        )  # fmt: skip

    async def launch_hours(self, session: AsyncSession, scope: Scope, span: Span) -> Result[Any]:
        """Downloads per episode and UTC hour: rows ``episode_id``, ``hour``, ``n``."""
        return await self._select(
            session, scope, DOWNLOADS, span,
            "d.episode_id, date_trunc('hour', d.first_at, 'UTC') AS hour, count(*) AS n", "1, 2",
        )  # fmt: skip


DAILY_ROLLUP = DailyRollup()
HOURLY_ROLLUP = HourlyRollup()
RAW_EVENTS = Raw()
ROLLUPS: Mapping[Source, Rollup] = {Source.DAILY: DAILY_ROLLUP, Source.HOURLY: HOURLY_ROLLUP}
