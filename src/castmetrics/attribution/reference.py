"""The attribution rules written the plain way: one conversion at a time, in Python.

This is the specification the SQL engine (``engine.py``) is checked against, in the property tests
and in ``bench/attribution`` (which also measures how much slower this way is). It is not used to
answer requests.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from castmetrics.attribution.schemas import MODELS, Model


@dataclass(frozen=True, slots=True)
class Touch:
    id: uuid.UUID
    at: datetime
    listener_id: str
    group: uuid.UUID
    campaign_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Conversion:
    id: uuid.UUID
    at: datetime
    listener_id: str
    group: uuid.UUID
    revenue: float
    lookback: timedelta


def credits(model: Model, touches: Sequence[Touch], at: datetime, half_life: timedelta) -> list[float]:
    """Each touch's credit for one conversion at ``at``; ``touches`` ordered by time, then id."""
    n = len(touches)
    if n == 0:
        return []
    if model == "first_touch":
        return [1.0] + [0.0] * (n - 1)
    if model == "last_touch":
        return [0.0] * (n - 1) + [1.0]
    if model == "linear":
        return [1.0 / n] * n
    if model == "time_decay":
        latest = touches[-1].at
        weights = [2.0 ** max(-1000.0, -(latest - t.at).total_seconds() / half_life.total_seconds()) for t in touches]
        total = sum(weights)
        return [w / total for w in weights]
    if model == "position_based":
        if n == 1:
            return [1.0]
        if n == 2:
            return [0.5, 0.5]
        return [0.4] + [0.2 / (n - 2)] * (n - 2) + [0.4]
    raise ValueError(f"unknown attribution model {model!r}")


def candidates(conversion: Conversion, touches: Iterable[Touch]) -> list[Touch]:
    """The conversion's candidate touches, ordered by time, then by event id."""
    since = conversion.at - conversion.lookback
    found = [
        t
        for t in touches
        if t.listener_id == conversion.listener_id and t.group == conversion.group and since <= t.at <= conversion.at
    ]
    return sorted(found, key=lambda t: (t.at, t.id))


def by_campaign(
    conversions: Iterable[Conversion],
    touches: Iterable[Touch],
    *,
    models: Sequence[Model] = MODELS,
    half_life: timedelta = timedelta(days=7),
) -> dict[tuple[uuid.UUID, Model], tuple[float, float]]:
    """(credited conversions, credited revenue) per (touch campaign, model), one conversion at a time."""
    by_listener: dict[tuple[str, uuid.UUID], list[Touch]] = defaultdict(list)
    for touch in touches:
        by_listener[(touch.listener_id, touch.group)].append(touch)
    totals: dict[tuple[uuid.UUID, Model], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for conversion in conversions:
        found = candidates(conversion, by_listener.get((conversion.listener_id, conversion.group), ()))
        for model in models:
            for touch, credit in zip(found, credits(model, found, conversion.at, half_life), strict=True):
                total = totals[(touch.campaign_id, model)]
                total[0] += credit
                total[1] += credit * conversion.revenue
    return {key: (value[0], value[1]) for key, value in totals.items()}
