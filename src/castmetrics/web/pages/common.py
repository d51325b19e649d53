"""What several pages share: the reporting period, chart building from API answers, path ids, and API
calls made together."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from castmetrics.web.api import ApiError
from castmetrics.web.charts import Series, bar_chart, line_chart
from castmetrics.web.session import PageError, Viewer, page_error

PERIODS = (7, 30, 90, 365)
DEFAULT_PERIOD = 30


@dataclass(frozen=True)
class Period:
    """The whole days shown, in the viewer's zone (``to`` is today there)."""

    days: int
    start: date
    end: date

    @property
    def params(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def period_of(viewer: Viewer, days: int | None) -> Period:
    chosen = days if days in PERIODS else DEFAULT_PERIOD
    today = datetime.now(viewer.zone).date()
    return Period(chosen, today - timedelta(days=chosen - 1), today)


def svg(markup: str) -> Markup:
    # The chart module escapes every text it draws, so its SVG is safe to place as is.
    return Markup(markup)  # escaped by castmetrics.web.charts


def _bucket(point: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(point["bucket"]).replace("Z", "+00:00"))


def series_chart(
    answers: list[tuple[str, dict[str, Any]]], title: str, *, width: int = 640, height: int = 240
) -> Markup:
    """A line chart of timeseries answers (each named), dated by their buckets' days."""
    series = [Series(name, [(_bucket(p).date(), p["value"]) for p in answer["points"]]) for name, answer in answers]
    return svg(line_chart(series, title=title, width=width, height=height))


def bars(items: list[tuple[str, float]], title: str) -> Markup:
    return svg(bar_chart(items, title=title))


def metric_map(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["metric"]: item for item in summary["metrics"]}


def uuid_or_404(value: str, what: str) -> str:
    """The id of a path as the API spells it, or the 404 page for anything that is not a UUID (not a 422)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise PageError(404, "Not found", f"There is no such {what}.") from None


def days_of(raw: str | None) -> int | None:
    """The ``days`` query as a number; anything else means the default period (not a 422)."""
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


async def gather_api(*calls: Awaitable[Any]) -> list[Any]:
    """Independent API calls made at once. Every call finishes (nothing keeps running after the page),
    then the first refusal in the order given decides the page: another tenant's id is the API's 404."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, ApiError):
            raise page_error(result)
        if isinstance(result, BaseException):
            raise result
    return list(results)


def page_url(path: str, **params: str | None) -> str:
    query = urlencode({key: value for key, value in params.items() if value})
    return f"{path}?{query}" if query else path
