"""What several pages share: the reporting period, chart building from API answers, the SVG marker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from markupsafe import Markup

from castmetrics.web.charts import Series, bar_chart, line_chart
from castmetrics.web.session import Viewer

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
    return Markup(markup)  # noqa: S704 - escaped by castmetrics.web.charts


def _bucket(point: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(point["bucket"]).replace("Z", "+00:00"))


def series_chart(answers: list[tuple[str, dict[str, Any]]], title: str, height: int = 240) -> Markup:
    """A line chart of timeseries answers (each named), dated by their buckets' days."""
    series = [Series(name, [(_bucket(p).date(), p["value"]) for p in answer["points"]]) for name, answer in answers]
    return svg(line_chart(series, title=title, height=height))


def bars(items: list[tuple[str, float]], title: str) -> Markup:
    return svg(bar_chart(items, title=title))


def metric_map(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["metric"]: item for item in summary["metrics"]}
