"""Answer shapes of the analytics routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Metric = Literal["downloads", "listeners", "plays", "completes", "skips", "unique_listeners"]
Interval = Literal["day", "week", "month"]
BreakdownBy = Literal["country", "app", "device", "device_category", "event_type"]


class Point(BaseModel):
    bucket: datetime
    value: int


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
