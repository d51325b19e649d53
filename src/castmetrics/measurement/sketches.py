"""HyperLogLog sketches of listeners per day and scope (episode, podcast, whole tenant), and per month.

The recorder feeds them with a keyed client hash that is stable across days (daily-salted hashes
cannot be counted across days); weekly and monthly listeners are unions of daily sketches. Each month
also has its days pre-merged (``download_sketches_monthly``, merged by ``add`` in the same transaction
as the days), so a long range reads its whole months as one sketch each and only its partial months
day by day. A sketch keeps register values only — no hashes — so nothing in it leads back to a client.

An HLL union takes the maximum of each register, so a month's sketch has the very registers of the
union of its days, in whatever order they were merged; the estimate of a union is read from the
registers alone (the composite estimator, ``_estimate``), so it is the same number however the union
was put together (days or months, any order).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, timedelta

import datasketches
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.binary import fetch_binary
from castmetrics.db.values import values

ALL = uuid.UUID(int=0)
LG_K = 16  # 65,536 registers: relative standard error ~0.4%, so 1% is 2.5 standard errors


def new() -> datasketches.hll_sketch:
    return datasketches.hll_sketch(LG_K, datasketches.tgt_hll_type.HLL_8)


def month_of(day: date) -> date:
    return day.replace(day=1)


def month_days(month: date) -> list[date]:
    following = (month + timedelta(days=32)).replace(day=1)
    return [month + timedelta(days=n) for n in range((following - month).days)]


def merged(serialized: Iterable[bytes]) -> bytes:
    """The union of serialized sketches, serialized."""
    union = datasketches.hll_union(LG_K)
    for sketch in serialized:
        union.update(datasketches.hll_sketch.deserialize(sketch))
    return bytes(union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact())


async def _merge(
    session: AsyncSession, table: str, period: str, tenant_id: uuid.UUID,
    fresh: Mapping[tuple[date, uuid.UUID], datasketches.hll_sketch],
) -> None:  # fmt: skip
    """Union ``fresh`` into the rows of (period, scope) of ``table``, locked in a fixed order."""
    keys = sorted(fresh, key=lambda k: (k[0], str(k[1])))
    periods = [at for at, _ in keys]
    scopes = [scope for _, scope in keys]
    params = {"t": tenant_id, "periods": periods, "scopes": scopes}
    empty = new().serialize_compact()
    # multi-row VALUES, not INSERT … SELECT FROM unnest: Citus routes it to the tenant's shard (db.values)
    missing, missing_params = values(
        [(tenant_id, at, scope, empty) for at, scope in keys], ("uuid", "date", "uuid", "bytea")
    )
    await session.execute(
        text(f"INSERT INTO {table} (tenant_id, {period}, scope_id, sketch) VALUES {missing} ON CONFLICT DO NOTHING"),
        missing_params,
    )
    rows = await session.execute(
        text(
            f"SELECT {period} AS at, scope_id, sketch FROM {table} "
            f"WHERE tenant_id = :t AND ({period}, scope_id) IN (SELECT * FROM unnest(CAST(:periods AS date[]), "
            f"CAST(:scopes AS uuid[]))) ORDER BY {period}, scope_id::text FOR UPDATE"
        ),
        params,
    )
    updated_periods, updated_scopes, updated = [], [], []
    for row in rows:
        union = datasketches.hll_union(LG_K)
        union.update(datasketches.hll_sketch.deserialize(row.sketch))
        union.update(fresh[(row.at, row.scope_id)])
        updated_periods.append(row.at)
        updated_scopes.append(row.scope_id)
        updated.append(union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact())
    await session.execute(
        text(
            f"UPDATE {table} s SET sketch = u.sketch FROM unnest(CAST(:periods AS date[]), "
            "CAST(:scopes AS uuid[]), CAST(:sketches AS bytea[])) AS u(at, scope_id, sketch) "
            f"WHERE s.tenant_id = :t AND s.{period} = u.at AND s.scope_id = u.scope_id"
        ),
        {"t": tenant_id, "periods": updated_periods, "scopes": updated_scopes, "sketches": updated},
    )


async def add(session: AsyncSession, tenant_id: uuid.UUID, feed: Mapping[tuple[date, uuid.UUID], list[str]]) -> None:
    """Add client keys to the sketches of (day, scope), and of the day's month, in the caller's
    transaction. Rows are locked in a fixed order (days, then months), so concurrent recorders (one per
    process) never deadlock or lose an update."""
    if not feed:
        return
    days: dict[tuple[date, uuid.UUID], datasketches.hll_sketch] = {}
    months: dict[tuple[date, uuid.UUID], datasketches.hll_union] = {}
    for (day, scope), clients in feed.items():
        fresh = days[(day, scope)] = new()
        for count, client in enumerate(clients, 1):
            fresh.update(client)
            if count % 2000 == 0:
                await asyncio.sleep(0)  # the prefix answers on this loop too
        months.setdefault((month_of(day), scope), datasketches.hll_union(LG_K)).update(fresh)
    await _merge(session, "download_sketches", "day", tenant_id, days)
    monthly = {key: union.get_result(datasketches.tgt_hll_type.HLL_8) for key, union in months.items()}
    await _merge(session, "download_sketches_monthly", "month", tenant_id, monthly)


def _estimate(union: datasketches.hll_union) -> float:
    """The union's estimate from its registers alone: the composite estimator, which the out-of-order
    flag selects. (The HIP estimator a union may otherwise keep depends on the order coupons were
    merged in, so a union of months and one of their days could differ in the last digits.)"""
    serialized = bytearray(union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact())
    if serialized[_MODE_BYTE] & 3 == _HLL_MODE:
        serialized[_FLAGS_BYTE] |= _OUT_OF_ORDER
    return float(datasketches.hll_sketch.deserialize(bytes(serialized)).get_estimate())


_FLAGS_BYTE, _OUT_OF_ORDER, _MODE_BYTE, _HLL_MODE = 5, 16, 7, 2  # the datasketches HLL preamble


async def estimate(session: AsyncSession, tenant_id: uuid.UUID, scope: uuid.UUID, days: Iterable[date]) -> float:
    """Distinct listeners of ``scope`` over ``days`` (any set of days), estimated from their union: the
    months ``days`` hold whole from their monthly sketches, the other days from their own."""
    day_set = set(days)
    if not day_set:
        return 0.0
    months = sorted({month_of(day) for day in day_set if day.day == 1 and day_set.issuperset(month_days(day))})
    whole = {day for month in months for day in month_days(month)}
    union = datasketches.hll_union(LG_K)
    rows = await fetch_binary(
        session,
        "SELECT sketch FROM download_sketches_monthly WHERE tenant_id = %(t)s AND scope_id = %(s)s "
        "AND month = ANY(CAST(%(months)s AS date[])) UNION ALL "
        "SELECT sketch FROM download_sketches WHERE tenant_id = %(t)s AND scope_id = %(s)s "
        "AND day = ANY(CAST(%(days)s AS date[]))",
        {"t": tenant_id, "s": scope, "months": months, "days": sorted(day_set - whole)},
    )
    for (sketch,) in rows:
        union.update(datasketches.hll_sketch.deserialize(sketch))
    return _estimate(union)
