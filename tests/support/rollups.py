"""Rollup rows as a recount would store them, to compare incremental rollups with rebuilt ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from castmetrics.events.rollups import day_listeners


def whole_days(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """``listener_daily`` rows with ``listeners`` as the day's whole bitmap (its listeners OR those it
    gained since, ``recent``, which a refresh cycle writes instead of the whole bitmap) and no ``recent``."""
    out = []
    for row in rows:
        values = dict(row._mapping)
        members = day_listeners(values["listeners"], values.pop("recent", None))
        members.run_optimize()
        values["listeners"] = members.serialize()
        out.append(values)
    return out
