"""Analytics routes for the scopes ``episodes/{id}``, ``podcasts/{id}`` and ``tenant``.

Every route answers JSON, or CSV with ``Accept: text/csv``. Answers are cached briefly per tenant
(``analytics/cache.py``). This module is deliberately free of ``from __future__ import annotations``:
the routes of each scope are made by a factory whose dependency FastAPI must see at definition time.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from castmetrics.analytics import service
from castmetrics.analytics.cache import AnswerCache
from castmetrics.analytics.export import CSV, csv_response, wants_csv
from castmetrics.analytics.schemas import (
    BreakdownBy,
    BreakdownOut,
    Interval,
    LaunchOut,
    Metric,
    SummaryOut,
    TimeseriesOut,
    TopEpisodesOut,
    TopMetric,
)
from castmetrics.auth.dependencies import requires
from castmetrics.auth.principal import Principal
from castmetrics.catalog.models import Episode, Podcast
from castmetrics.errors import Forbidden, Invalid, NotFound
from castmetrics.http.timerange import parse_bound

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])
MAX_DAYS = 1000
MAX_HOUR_DAYS = 92  # an hourly series of at most 2,208 points
DEFAULT_DAYS = 30
Bound = Annotated[str | None, Query(max_length=40, description="End: a date (included) or a zoned datetime.")]
From = Annotated[str | None, Query(alias="from", max_length=40, description="Start: a date or a zoned datetime.")]
Zone = Annotated[
    str,
    Query(max_length=64, description="IANA time zone of the buckets, or `tenant` for the tenant's zone (default UTC)."),
]
Reader = Annotated[Principal, requires("analytics", "read")]
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {CSV: {"schema": {"type": "string"}}}}}


@dataclass(frozen=True)
class Target:
    principal: Principal
    scope: service.Scope


EXPORT = "analytics:export"


def _exports_csv(request: Request, target: Target) -> bool:
    """Whether the answer goes out as a CSV file: asked for (``Accept: text/csv``) and allowed — a file
    leaves the product, so it needs ``analytics:export`` beside ``analytics:read``."""
    if not wants_csv(request):
        return False
    if not target.principal.has(EXPORT):
        raise Forbidden(f"a CSV export needs the {EXPORT} permission", reason="missing_permission", permission=EXPORT)
    return True


def _zone(name: str, principal: Principal) -> ZoneInfo:
    if name == "tenant":
        name = principal.tenant.time_zone or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        message = f"tz must be an IANA time zone such as Europe/Paris, or tenant (got {name!r})"
        raise Invalid(message, parameter="tz") from None


def day_range(start: str | None, end: str | None, zone: ZoneInfo, max_days: int = MAX_DAYS) -> tuple[date, date]:
    """The whole days (in ``zone``) that ``from`` and ``to`` cover; default the last 30 days."""
    end_at = parse_bound(end, name="to", end=True, tz=zone)
    start_at = parse_bound(start, name="from", end=False, tz=zone)
    last = (
        (end_at - timedelta(microseconds=1)).astimezone(zone).date()
        if end_at
        else datetime.now(UTC).astimezone(zone).date()
    )
    first = start_at.astimezone(zone).date() if start_at else last - timedelta(days=min(DEFAULT_DAYS, max_days) - 1)
    if first > last:
        raise Invalid("from must not be after to", parameter="from")
    if (last - first).days + 1 > max_days:
        raise Invalid(f"a range may cover at most {max_days} days here", parameter="from")
    if first < date(1970, 1, 2) or last > date(9999, 1, 1):
        raise Invalid("from and to must be between 1970 and 9999", parameter="from")
    return first, last


async def _cached(
    request: Request, target: Target, question: tuple[Any, ...], compute: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    cache = request.app.state.analytics_cache
    assert isinstance(cache, AnswerCache)
    try:
        return await cache.get_or_compute(
            target.principal.session, target.scope.tenant_id, (target.scope, *question), compute
        )
    except service.Unsupported as exc:
        raise Invalid(str(exc), parameter=exc.parameter) from None


def _dependency(kind: str) -> Callable[..., Awaitable[Target]]:
    """The dependency resolving a scope: its id from the path, found through the tenant's own session."""
    if kind == "tenant":

        async def tenant(principal: Reader) -> Target:
            return Target(principal, service.Scope("tenant", principal.tenant.id))

        return tenant
    model = Podcast if kind == "podcast" else Episode

    async def scoped(scope_id: uuid.UUID, principal: Reader) -> Target:
        # whether it exists, not the row: no ORM object to build
        found = select(model.id).where(model.tenant_id == principal.tenant.id, model.id == scope_id)
        if await principal.session.scalar(found) is None:
            raise NotFound(f"no such {kind}")
        return Target(principal, service.Scope(kind, principal.tenant.id, scope_id))

    return scoped


def _add_routes(kind: str, path: str, label: str) -> None:  # noqa: C901 - one route per answer, kept together
    Scoped = Annotated[Target, Depends(_dependency(kind))]

    @router.get(
        f"{path}/timeseries", response_model=TimeseriesOut, responses=CSV_RESPONSE, summary=f"Time series for {label}"
    )
    async def timeseries(
        request: Request, target: Scoped, metric: Metric, start: From = None, to: Bound = None,
        interval: Interval = "day", tz: Zone = "UTC",
    ) -> Any:  # fmt: skip
        zone = _zone(tz, target.principal)
        first, last = day_range(start, to, zone, MAX_HOUR_DAYS if interval == "hour" else MAX_DAYS)
        buckets = service.make_buckets(first, last, zone, interval)

        async def compute() -> dict[str, Any]:
            values, estimate = await service.series(target.principal.session, target.scope, metric, buckets)
            points = [{"bucket": b.label, "value": v} for b, v in zip(buckets, values, strict=True)]
            return {"metric": metric, "interval": interval, "tz": zone.key, "estimate": estimate, "points": points}

        answer = await _cached(request, target, ("timeseries", metric, first, last, interval, zone.key), compute)
        if _exports_csv(request, target):
            rows = ((point["bucket"], point["value"]) for point in answer["points"])
            return csv_response(f"{metric}-{interval}", ("bucket", metric), rows)
        return answer

    @router.get(f"{path}/summary", response_model=SummaryOut, responses=CSV_RESPONSE, summary=f"Summary for {label}")
    async def summary(
        request: Request, target: Scoped, start: From = None, to: Bound = None, tz: Zone = "UTC",
        metric: Annotated[
            list[Metric] | None, Query(description="Only these metrics (repeat the parameter); default every one.")
        ] = None,
    ) -> Any:  # fmt: skip
        zone = _zone(tz, target.principal)
        first, last = day_range(start, to, zone)
        metrics = tuple(m for m in service.METRICS if metric is None or m in metric)

        async def compute() -> dict[str, Any]:
            return await service.summary(target.principal.session, target.scope, first, last, zone, metrics=metrics)

        answer = await _cached(request, target, ("summary", first, last, zone.key, metrics), compute)
        if _exports_csv(request, target):
            rows = ((m["metric"], m["value"], m["previous"], m["change"], m["estimate"]) for m in answer["metrics"])
            return csv_response("summary", ("metric", "value", "previous", "change", "estimate"), rows)
        return answer

    @router.get(
        f"{path}/breakdown",
        response_model=BreakdownOut,
        response_model_exclude_none=True,
        responses=CSV_RESPONSE,
        summary=f"Breakdown for {label}",
    )
    async def breakdown(
        request: Request, target: Scoped, by: BreakdownBy, start: From = None, to: Bound = None, tz: Zone = "UTC"
    ) -> Any:
        zone = _zone(tz, target.principal)
        first, last = day_range(start, to, zone)
        if by != "event_type" and zone.key != "UTC":
            raise Invalid("downloads and listeners are counted per UTC day (IAB); omit tz or use UTC", parameter="tz")

        async def compute() -> dict[str, Any]:
            session = target.principal.session
            if by == "event_type":
                return {"by": by, "items": await service.event_type_breakdown(session, target.scope, first, last, zone)}
            return {"by": by, "items": await service.download_breakdown(session, target.scope, by, first, last)}

        answer = await _cached(request, target, ("breakdown", by, first, last, zone.key), compute)
        if _exports_csv(request, target):
            if by == "event_type":
                return csv_response(by, ("key", "count"), ((i["key"], i["count"]) for i in answer["items"]))
            rows = ((i["key"], i["downloads"], i["listeners"]) for i in answer["items"])
            return csv_response(by, ("key", "downloads", "listeners"), rows)
        return answer

    @router.get(
        f"{path}/top-episodes",
        response_model=TopEpisodesOut,
        responses=CSV_RESPONSE,
        summary=f"Top episodes of {label} by a metric",
    )
    async def top_episodes(
        request: Request, target: Scoped, metric: TopMetric = "downloads", start: From = None, to: Bound = None,
        tz: Zone = "UTC", limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> Any:  # fmt: skip
        zone = _zone(tz, target.principal)
        first, last = day_range(start, to, zone)

        async def compute() -> dict[str, Any]:
            items = await service.top_episodes(target.principal.session, target.scope, metric, first, last, zone, limit)
            return {"metric": metric, "from": first, "to": last, "tz": zone.key, "items": items}

        answer = await _cached(request, target, ("top", metric, first, last, zone.key, limit), compute)
        if _exports_csv(request, target):
            header = ("rank", "episode_id", "podcast_id", "title", "published_at", metric)
            rows = (
                (i["rank"], i["episode_id"], i["podcast_id"], i["title"], i["published_at"], i["value"])
                for i in answer["items"]
            )
            return csv_response(f"top-episodes-{metric}", header, rows)
        return answer

    @router.get(
        f"{path}/launch",
        response_model=LaunchOut,
        responses=CSV_RESPONSE,
        summary=f"Launch curves of {label}: downloads in an episode's first 1, 7, 30 and 90 days",
    )
    async def launch(
        request: Request, target: Scoped, limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Any:  # fmt: skip
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

        async def compute() -> dict[str, Any]:
            return await service.launch_curves(target.principal.session, target.scope, now)

        curves = await _cached(request, target, ("launch", now), compute)
        episodes = curves["episodes"]
        answer = {**curves, "total": len(episodes), "episodes": episodes[offset : offset + limit]}
        if _exports_csv(request, target):
            windows = [f"day_{n}" for n in service.LAUNCH_WINDOWS]
            rows = [[e["episode_id"], e["title"], e["published_at"], *(e[w] for w in windows)] for e in episodes]
            average = curves["average"]
            mean = [average[w] for w in windows]
            rows.append(["average", f"average of {average['episodes_1']} episodes", None, *mean])
            return csv_response("launch", ("episode_id", "title", "published_at", *windows), rows)
        return answer


_add_routes("tenant", "/tenant", "the whole tenant")
_add_routes("podcast", "/podcasts/{scope_id}", "a podcast")
_add_routes("episode", "/episodes/{scope_id}", "an episode")
