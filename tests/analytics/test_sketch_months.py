"""Monthly download sketches: each month's sketch is the union of its days' sketches, and an estimate over
a range that holds whole months (read from them) is the estimate of the union of all its days."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import datasketches
import httpx
from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.measurement import sketches
from castmetrics.measurement.recorder import Recorder
from tests.factories.analytics import Traffic, add_traffic


def _union_estimate(serialized: list[bytes]) -> float:
    union = datasketches.hll_union(sketches.LG_K)
    for sketch in serialized:
        union.update(datasketches.hll_sketch.deserialize(sketch))
    return sketches._estimate(union)


async def test_monthly_sketches_are_the_unions_of_their_days(
    traffic: Traffic, db: Database, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    today = traffic.days[0]
    days = [today - timedelta(days=n) for n in range(75)]  # two whole months at least
    await add_traffic(client, traffic.show, recorder, days, random.Random(31), count=400)
    await add_traffic(client, traffic.show, recorder, days[:40:3], random.Random(32), count=200)  # merged again
    tenant_id = traffic.show.team.tenant_id
    async with db.tenant_transaction(tenant_id) as session:
        day_rows = (await session.execute(text("SELECT day, scope_id, sketch FROM download_sketches"))).all()
        month_rows = (
            await session.execute(text("SELECT month, scope_id, sketch FROM download_sketches_monthly"))
        ).all()
        by_month: dict[tuple[object, uuid.UUID], list[bytes]] = {}
        for row in day_rows:
            by_month.setdefault((row.day.replace(day=1), row.scope_id), []).append(row.sketch)
        assert {(row.month, row.scope_id) for row in month_rows} == set(by_month)
        assert len({row.month for row in month_rows}) >= 3
        for row in month_rows:
            assert _union_estimate([row.sketch]) == _union_estimate(by_month[(row.month, row.scope_id)])
        # ranges read from whole months and partial months' days equal the union of all their days
        scopes = {row.scope_id for row in day_rows}
        assert sketches.ALL in scopes
        for scope in scopes:
            for first, last in ((days[-1], today), (days[-1] + timedelta(days=3), today - timedelta(days=2))):
                wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
                found = await sketches.estimate(session, tenant_id, scope, wanted)
                serialized = [row.sketch for row in day_rows if row.scope_id == scope and first <= row.day <= last]
                assert found == (_union_estimate(serialized) if serialized else 0.0)
