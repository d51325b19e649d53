"""Multi-row ``INSERT … VALUES`` from Python rows.

On Citus an ``INSERT … SELECT`` whose rows come from a function (``unnest`` of array parameters) runs through
the coordinator as a ``COPY`` into the shards, which row-level security refuses; the same rows as one
multi-row ``VALUES`` list are routed to the tenant's shard and checked by its policy, as on one server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def values(rows: Sequence[Sequence[Any]], casts: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """``(CAST(:v0_0 AS t0), …), (…)`` for ``rows`` (each as long as ``casts``, the columns' types), and its
    parameters."""
    params: dict[str, Any] = {}
    groups = []
    for n, row in enumerate(rows):
        if len(row) != len(casts):
            raise ValueError(f"row {n} has {len(row)} values for {len(casts)} columns")
        names = []
        for m, (value, cast) in enumerate(zip(row, casts, strict=True)):
            name = f"v{n}_{m}"
            params[name] = value
            names.append(f"CAST(:{name} AS {cast})")
        groups.append(f"({', '.join(names)})")
    return ", ".join(groups), params
