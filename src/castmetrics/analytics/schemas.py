"""Answer shapes of the analytics routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

Metric = Literal["plays", "completes", "skips", "unique_listeners"]
Interval = Literal["day"]
BreakdownBy = Literal["event_type"]


class Point(BaseModel):
    bucket: datetime
    value: int


class TimeseriesOut(BaseModel):
    metric: Metric
    interval: Interval
    tz: str
    points: list[Point]


class BreakdownItem(BaseModel):
    key: str
    count: int


class BreakdownOut(BaseModel):
    by: BreakdownBy
    items: list[BreakdownItem]
