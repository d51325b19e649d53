"""Answer shapes of the analytics routes."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

Metric = Literal[
    "downloads", "listeners", "plays", "completes", "skips", "unique_listeners", "listen_through_rate",
    "avg_listen_seconds",
]  # fmt: skip
TopMetric = Literal["downloads", "plays", "completes", "skips", "listen_through_rate", "avg_listen_seconds"]
Interval = Literal["hour", "day", "week", "month"]
BreakdownBy = Literal["country", "app", "device", "device_category", "event_type"]
Number = int | float


class Point(BaseModel):
    bucket: datetime = Field(description="The bucket's start in the answer's time zone.")
    value: Number | None = Field(description="Null for a ratio without plays in the bucket.")


class TimeseriesOut(BaseModel):
    metric: Metric
    interval: Interval
    tz: str
    estimate: bool = Field(
        default=False, description="True when values are HyperLogLog estimates (weekly and monthly listeners)."
    )
    points: list[Point]


class BreakdownItem(BaseModel):
    key: str = Field(description="ISO country code, OPAWG entry name, or `Unknown`; for event_type the type.")
    downloads: int | None = None
    listeners: int | None = None
    count: int | None = Field(default=None, description="Events of the type (by=event_type only).")


class BreakdownOut(BaseModel):
    by: BreakdownBy
    items: list[BreakdownItem]


class SummaryItem(BaseModel):
    metric: Metric
    value: Number | None
    previous: Number | None = Field(description="The same metric over the period of the same length just before.")
    change: float | None = Field(description="(value − previous) / previous; null when previous is 0 or null.")
    estimate: bool = False


class SummaryOut(BaseModel):
    from_: date = Field(alias="from")
    to: date
    previous_from: date
    previous_to: date
    tz: str
    metrics: list[SummaryItem]

    model_config = {"populate_by_name": True}


class TopEpisode(BaseModel):
    rank: int
    episode_id: uuid.UUID
    podcast_id: uuid.UUID
    title: str
    published_at: datetime | None
    value: Number


class TopEpisodesOut(BaseModel):
    metric: TopMetric
    from_: date = Field(alias="from")
    to: date
    tz: str
    items: list[TopEpisode]

    model_config = {"populate_by_name": True}


class LaunchCurve(BaseModel):
    day_1: Number | None
    day_7: Number | None
    day_30: Number | None
    day_90: Number | None


class LaunchAverage(LaunchCurve):
    episodes_1: int = Field(description="Episodes whose first day is over (those averaged for day_1); and so on.")
    episodes_7: int
    episodes_30: int
    episodes_90: int


class LaunchEpisode(LaunchCurve):
    episode_id: uuid.UUID
    title: str
    published_at: datetime


class LaunchOut(BaseModel):
    windows: list[int]
    average: LaunchAverage
    total: int = Field(description="Published episodes in the scope (the page lists `limit` from `offset`).")
    episodes: list[LaunchEpisode]
