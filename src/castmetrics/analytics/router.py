"""Analytics routes for the scopes ``episodes/{id}``, ``podcasts/{id}`` and ``tenant``."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query

from castmetrics.analytics import service
from castmetrics.analytics.schemas import BreakdownBy, BreakdownOut, Interval, Metric, TimeseriesOut
from castmetrics.catalog.models import Episode, Podcast
from castmetrics.errors import Invalid, NotFound
from castmetrics.http.auth import requires
from castmetrics.http.timerange import parse_bound
from castmetrics.identity.service import Principal

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])
MAX_DAYS = 1000
DEFAULT_DAYS = 30
Bound = Annotated[str | None, Query(max_length=40, description="A date (2026-11-24) or a datetime with zone.")]
From = Annotated[str | None, Query(alias="from", max_length=40, description="Start: a date or a zoned datetime.")]
Zone = Annotated[str, Query(max_length=64, description="IANA time zone of the day buckets (default UTC).")]
Reader = Annotated[Principal, requires("analytics", "read")]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"tz must be an IANA time zone such as Europe/Paris (got {name!r})", parameter="tz") from None


def day_range(start: str | None, end: str | None, zone: ZoneInfo) -> tuple[date, date]:
    """The whole days (in ``zone``) that ``from`` and ``to`` cover; default the last 30 days."""
    end_at = parse_bound(end, name="to", end=True, tz=zone)
    start_at = parse_bound(start, name="from", end=False, tz=zone)
    last = (
        (end_at - timedelta(microseconds=1)).astimezone(zone).date()
        if end_at
        else datetime.now(UTC).astimezone(zone).date()
    )
    first = start_at.astimezone(zone).date() if start_at else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise Invalid("from must not be after to", parameter="from")
    if (last - first).days + 1 > MAX_DAYS:
        raise Invalid(f"a range may cover at most {MAX_DAYS} days", parameter="from")
    return first, last


async def _scope(principal: Principal, kind: str, scope_id: uuid.UUID | None) -> service.Scope:
    model = {"episode": Episode, "podcast": Podcast}.get(kind)
    if model is not None and await principal.session.get(model, (principal.tenant.id, scope_id)) is None:
        raise NotFound(f"no such {kind}")
    return service.Scope(kind=kind, tenant_id=principal.tenant.id, id=scope_id)


async def _timeseries(
    principal: Principal, kind: str, scope_id: uuid.UUID | None, metric: str, start: str | None, end: str | None,
    tz: str, interval: str = "day",
) -> dict[str, Any]:  # fmt: skip
    zone = _zone(tz)
    first, last = day_range(start, end, zone)
    scope = await _scope(principal, kind, scope_id)
    estimate = False
    if metric in service.DOWNLOAD_METRICS:
        if zone.key != "UTC":
            raise Invalid("downloads and listeners are counted per UTC day (IAB); omit tz or use UTC", parameter="tz")
        values, estimate = await service.download_series(principal.session, scope, metric, first, last, interval)
        points = [(day, round(value)) for day, value in values]
    elif interval != "day":
        raise Invalid(f"{metric} is available by day (interval=day)", parameter="interval")
    else:
        points = await service.timeseries(principal.session, scope, metric, first, last, zone.key)
    return {
        "metric": metric,
        "interval": interval,
        "tz": zone.key,
        "estimate": estimate,
        "points": [{"bucket": datetime.combine(day, time.min, tzinfo=zone), "value": value} for day, value in points],
    }


async def _breakdown(
    principal: Principal, kind: str, scope_id: uuid.UUID | None, by: str, start: str | None, end: str | None,
    tz: str,
) -> dict[str, Any]:  # fmt: skip
    zone = _zone(tz)
    first, last = day_range(start, end, zone)
    scope = await _scope(principal, kind, scope_id)
    if by == "event_type":
        items = await service.event_type_breakdown(principal.session, scope, first, last, zone.key)
    else:
        if zone.key != "UTC":
            raise Invalid("downloads and listeners are counted per UTC day (IAB); omit tz or use UTC", parameter="tz")
        items = await service.download_breakdown(principal.session, scope, by, first, last)
    return {"by": by, "items": items}


@router.get("/tenant/timeseries", response_model=TimeseriesOut, summary="Time series for the whole tenant")
async def tenant_timeseries(
    principal: Reader, metric: Metric, start: From = None, to: Bound = None, interval: Interval = "day",
    tz: Zone = "UTC",
) -> dict[str, Any]:  # fmt: skip
    return await _timeseries(principal, "tenant", None, metric, start, to, tz, interval)


@router.get("/podcasts/{podcast_id}/timeseries", response_model=TimeseriesOut, summary="Time series for a podcast")
async def podcast_timeseries(
    podcast_id: uuid.UUID, principal: Reader, metric: Metric, start: From = None, to: Bound = None,
    interval: Interval = "day", tz: Zone = "UTC",
) -> dict[str, Any]:  # fmt: skip
    return await _timeseries(principal, "podcast", podcast_id, metric, start, to, tz, interval)


@router.get("/episodes/{episode_id}/timeseries", response_model=TimeseriesOut, summary="Time series for an episode")
async def episode_timeseries(
    episode_id: uuid.UUID, principal: Reader, metric: Metric, start: From = None, to: Bound = None,
    interval: Interval = "day", tz: Zone = "UTC",
) -> dict[str, Any]:  # fmt: skip
    return await _timeseries(principal, "episode", episode_id, metric, start, to, tz, interval)


@router.get(
    "/tenant/breakdown",
    response_model=BreakdownOut,
    response_model_exclude_none=True,
    summary="Breakdown for the whole tenant",
)
async def tenant_breakdown(
    principal: Reader, by: BreakdownBy, start: From = None, to: Bound = None, tz: Zone = "UTC"
) -> dict[str, Any]:
    return await _breakdown(principal, "tenant", None, by, start, to, tz)


@router.get(
    "/podcasts/{podcast_id}/breakdown",
    response_model=BreakdownOut,
    response_model_exclude_none=True,
    summary="Breakdown for a podcast",
)
async def podcast_breakdown(
    podcast_id: uuid.UUID, principal: Reader, by: BreakdownBy, start: From = None, to: Bound = None,
    tz: Zone = "UTC",
) -> dict[str, Any]:  # fmt: skip
    return await _breakdown(principal, "podcast", podcast_id, by, start, to, tz)


@router.get(
    "/episodes/{episode_id}/breakdown",
    response_model=BreakdownOut,
    response_model_exclude_none=True,
    summary="Breakdown for an episode",
)
async def episode_breakdown(
    episode_id: uuid.UUID, principal: Reader, by: BreakdownBy, start: From = None, to: Bound = None,
    tz: Zone = "UTC",
) -> dict[str, Any]:  # fmt: skip
    return await _breakdown(principal, "episode", episode_id, by, start, to, tz)
