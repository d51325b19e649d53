"""The metric registry: each metric is one object naming its measure, its value and how exact it is.

A measure is what the sources count for a family of metrics and how their rows combine; it reads all the
buckets at once from the coarsest source that fits them (``sources.choose``), so several metrics of one
measure cost one read. The name tuples (``METRICS``, ``TOP_METRICS``, ``LISTENER_METRICS``) derive from
``REGISTRY``; ``schemas.Metric`` and ``schemas.TopMetric`` spell the names again as ``Literal`` types for OpenAPI.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from pyroaring import BitMap
from sqlalchemy import Result
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.analytics.sources import (
    DAILY_ROLLUP,
    DOWNLOADING,
    LISTENING,
    RAW_EVENTS,
    ROLLUPS,
    Bucket,
    Key,
    Scope,
    Source,
    Tallies,
    Unsupported,
    bucket_edges,
    choose,
    days_between,
    split,
    utc_days,
)


class Kind(StrEnum):
    COUNT = "count"  # a sum of events or downloads
    RATIO = "ratio"  # one sum over another
    DISTINCT_LISTENERS = "distinct listeners"  # listener ids of listener events
    IAB_LISTENERS = "IAB listeners"  # distinct clients with a download, per UTC day


class Accuracy(StrEnum):
    EXACT = "exact"
    ESTIMATE_BEYOND_A_DAY = "exact for a UTC day, a HyperLogLog estimate for longer buckets"


@dataclass(frozen=True)
class Reading:
    """A measure's totals per bucket (and per episode), and whether any of them is an estimate."""

    totals: Mapping[Key, Mapping[str, float]]
    estimate: bool = False


class Measure(Protocol):
    """What the sources count for a family of metrics, and how their rows combine into a bucket's totals."""

    @property
    def kind(self) -> Kind: ...
    @property
    def events(self) -> str: ...  # listener | download: whose invalidations make its days pending
    @property
    def sources(self) -> tuple[Source, ...]: ...  # the sources that can answer it, coarsest first
    @property
    def accuracy(self) -> Accuracy: ...
    @property
    def per_episode(self) -> bool: ...  # can total each episode apart (to rank episodes)

    async def read(
        self, session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False,
        by_episode: bool = False,
    ) -> Reading: ...  # fmt: skip


def _add(totals: dict[Key, dict[str, float]], rows: Result[Any], columns: Sequence[str]) -> None:
    """Add rows (``b``, ``episode``, then ``columns`` in order) into the totals."""
    for row in rows:
        b, episode, *values = tuple(row)
        into = totals[(b - 1, episode)]
        for column, value in zip(columns, values, strict=True):
            if value:
                into[column] += float(value)


@dataclass(frozen=True, eq=False)
class Summed:
    """Tallies added up: a bucket's settled rows from the coarsest rollup that fits it, plus its pending
    days' raw rows; raw events alone for buckets no rollup fits (a zone such as Asia/Kolkata)."""

    tallies: Tallies
    kind: ClassVar[Kind] = Kind.COUNT
    accuracy: ClassVar[Accuracy] = Accuracy.EXACT
    per_episode: ClassVar[bool] = True

    @property
    def events(self) -> str:
        return self.tallies.events

    @property
    def sources(self) -> tuple[Source, ...]:
        return (*self.tallies.tables, Source.RAW)

    async def read(
        self, session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False,
        by_episode: bool = False,
    ) -> Reading:  # fmt: skip
        edges = bucket_edges(buckets)
        source = choose(self.sources, edges, from_raw=from_raw)
        assert source is not None, "raw events answer any buckets"
        days = await split(session, scope, edges[0], edges[-1], self.events, everything_pending=source is Source.RAW)
        columns = self.tallies.columns
        totals: dict[Key, dict[str, float]] = defaultdict(lambda: dict.fromkeys(columns, 0.0))
        if days.from_rollups:
            rows = await ROLLUPS[source].tallies(session, scope, self.tallies, edges, days, by_episode=by_episode)
            _add(totals, rows, columns)
        for span in days.raw_spans():
            _add(
                totals,
                await RAW_EVENTS.tallies(session, scope, self.tallies, edges, span, by_episode=by_episode),
                columns,
            )
        return Reading(totals)


@dataclass(frozen=True, eq=False)
class DistinctListeners:
    """Distinct listener ids, exact: for buckets of whole UTC days, the union of the settled days' (or
    whole months') bitmaps of listener keys with the pending days' raw listeners; else raw events."""

    kind: ClassVar[Kind] = Kind.DISTINCT_LISTENERS
    events: ClassVar[str] = "listener"
    sources: ClassVar[tuple[Source, ...]] = (Source.DAILY, Source.RAW)
    accuracy: ClassVar[Accuracy] = Accuracy.EXACT
    per_episode: ClassVar[bool] = False

    async def read(
        self, session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False,
        by_episode: bool = False,
    ) -> Reading:  # fmt: skip
        assert not by_episode, "distinct listeners are counted per bucket only"
        edges = bucket_edges(buckets)
        counts = [0] * len(buckets)
        if choose(self.sources, edges, from_raw=from_raw) is Source.RAW:
            for row in await RAW_EVENTS.distinct_listeners(session, scope, edges, (edges[0], edges[-1])):
                counts[row.b - 1] = int(row.n)
            return _per_bucket("unique_listeners", counts)
        days = await split(session, scope, edges[0], edges[-1], self.events)
        bitmaps: dict[int, list[BitMap]] = defaultdict(list)
        if all(bucket.one_day for bucket in buckets):  # a day's count is stored: no bitmap to read
            position = {bucket.start.date(): n for n, bucket in enumerate(buckets)}
            for row in await DAILY_ROLLUP.day_listeners(session, scope, days):
                counts[position[row.day]] = int(row.unique_listeners)
        else:
            bitmaps.update(await DAILY_ROLLUP.listener_bitmaps(session, scope, buckets, days.pending))
        # The pending days: numbered listeners join the bitmaps, the others (no key yet) are in none of them.
        unkeyed: dict[int, set[str]] = defaultdict(set)
        keyed: dict[int, list[int]] = defaultdict(list)
        for span in days.raw_spans():
            for row in await RAW_EVENTS.listener_ids(session, scope, edges, span):
                if row.key is None:
                    unkeyed[row.b - 1].add(row.listener)
                else:
                    keyed[row.b - 1].append(row.key)
        for index, keys in keyed.items():
            bitmaps[index].append(BitMap(keys))
        for index, parts in bitmaps.items():
            counts[index] = len(BitMap.union(*parts)) if len(parts) > 1 else len(parts[0])
        for index, listeners in unkeyed.items():
            counts[index] += len(listeners)
        return _per_bucket("unique_listeners", counts)


@dataclass(frozen=True, eq=False)
class IabListeners:
    """IAB listeners (distinct clients with a download) of buckets of whole UTC days: a day's exact count
    (settled from the daily rollup, pending from raw downloads), a HyperLogLog estimate for longer buckets.
    With ``from_raw`` single days are recounted from raw downloads, longer buckets stay estimates."""

    kind: ClassVar[Kind] = Kind.IAB_LISTENERS
    events: ClassVar[str] = "download"
    sources: ClassVar[tuple[Source, ...]] = (Source.DAILY,)
    accuracy: ClassVar[Accuracy] = Accuracy.ESTIMATE_BEYOND_A_DAY
    per_episode: ClassVar[bool] = False

    async def read(
        self, session: AsyncSession, scope: Scope, buckets: Sequence[Bucket], *, from_raw: bool = False,
        by_episode: bool = False,
    ) -> Reading:  # fmt: skip
        assert not by_episode, "IAB listeners are counted per bucket only"
        edges = bucket_edges(buckets)
        if choose(self.sources, edges, from_raw=from_raw) is None:
            raise Unsupported(
                "listeners are counted per UTC day (IAB): use tz=UTC and an interval of a day or longer", "tz"
            )
        counts = [0] * len(buckets)
        estimate = False
        for index, bucket in enumerate(buckets):
            if not bucket.one_day:
                days_of = days_between(*utc_days(bucket.start, bucket.end))
                counts[index] = round(await DAILY_ROLLUP.client_estimate(session, scope, days_of))
                estimate = True
        single = {bucket.start.date(): index for index, bucket in enumerate(buckets) if bucket.one_day}
        if single:
            days = await split(session, scope, edges[0], edges[-1], self.events, everything_pending=from_raw)
            if days.from_rollups:
                for row in await DAILY_ROLLUP.day_clients(session, scope, days, single):
                    counts[single[row.day]] = int(row.listeners)
            for span in days.raw_spans(within=single):
                for row in await RAW_EVENTS.day_clients(session, scope, span):
                    if row.day in single:
                        counts[single[row.day]] = int(row.n)
        return _per_bucket("listeners", counts, estimate=estimate)


def _per_bucket(column: str, counts: Sequence[int], *, estimate: bool = False) -> Reading:
    return Reading({(index, None): {column: float(n)} for index, n in enumerate(counts)}, estimate)


LISTENER_TALLIES = Summed(LISTENING)
DOWNLOAD_TALLIES = Summed(DOWNLOADING)
UNIQUE_LISTENERS = DistinctListeners()
IAB_LISTENERS = IabListeners()


# --- the registry -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A total as it is."""

    column: str

    def __call__(self, totals: Mapping[str, float]) -> int:
        return int(totals.get(self.column, 0))


@dataclass(frozen=True)
class Ratio:
    """One total over another, rounded; null where the other is 0."""

    numerator: str
    denominator: str
    digits: int

    def __call__(self, totals: Mapping[str, float]) -> float | None:
        denominator = totals.get(self.denominator, 0)
        return round(totals.get(self.numerator, 0) / denominator, self.digits) if denominator else None


@dataclass(frozen=True)
class Metric:
    name: str
    measure: Measure
    value: Count | Ratio  # from one bucket's totals of the measure

    @property
    def kind(self) -> Kind:
        return Kind.RATIO if isinstance(self.value, Ratio) else self.measure.kind

    @property
    def sources(self) -> tuple[Source, ...]:
        return self.measure.sources

    @property
    def accuracy(self) -> Accuracy:
        return self.measure.accuracy

    @property
    def ranks_episodes(self) -> bool:
        return self.measure.per_episode

    def of(self, totals: Mapping[str, float] | None) -> float | None:
        """The metric's value in a bucket (or an episode's part of it); no totals count as zeros."""
        return self.value(totals or {})


# In the order the summary lists them.
REGISTRY = (
    Metric("downloads", DOWNLOAD_TALLIES, Count("downloads")),
    Metric("listeners", IAB_LISTENERS, Count("listeners")),
    Metric("plays", LISTENER_TALLIES, Count("plays")),
    Metric("completes", LISTENER_TALLIES, Count("completes")),
    Metric("skips", LISTENER_TALLIES, Count("skips")),
    Metric("unique_listeners", UNIQUE_LISTENERS, Count("unique_listeners")),
    Metric("listen_through_rate", LISTENER_TALLIES, Ratio("completes", "plays", 4)),
    Metric("avg_listen_seconds", LISTENER_TALLIES, Ratio("listen_seconds", "plays", 2)),
)
BY_NAME = {metric.name: metric for metric in REGISTRY}
METRICS = tuple(BY_NAME)
TOP_METRICS = tuple(metric.name for metric in REGISTRY if metric.ranks_episodes)
LISTENER_METRICS = tuple(metric.name for metric in REGISTRY if metric.measure.events == "listener")
