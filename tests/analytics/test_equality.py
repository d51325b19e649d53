"""Every answer is the same whether served from rollups (with the raw tail) or recomputed from raw events.

Each metric is checked in every way it can be asked for — by hour, day, week and month, in UTC, in a
zone of whole-hour offsets (hourly rollups) and in a zone of half-hour offsets (raw events) — before
any rollup refresh (everything pending), after a refresh, and with new data pending on top of fresh
rollups. Summaries, top episodes, breakdowns and launch curves are checked the same way.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

from castmetrics.analytics import service as analytics
from castmetrics.analytics import sources
from castmetrics.db.session import Database
from castmetrics.measurement.recorder import Recorder
from castmetrics.rollups import service as rollups_service
from tests.factories.analytics import Traffic, add_traffic
from tests.factories.events import listener_event

WAYS = [
    ("UTC", "day"), ("UTC", "week"), ("UTC", "month"), ("UTC", "hour"),
    ("America/New_York", "day"), ("America/New_York", "hour"), ("Asia/Kolkata", "day"), ("Asia/Kolkata", "week"),
]  # fmt: skip


# Weekly and monthly IAB listeners are HyperLogLog unions on both paths (the sketches are the only
# record of a client across days); their accuracy is tested in test_routes.py.


def scopes(traffic: Traffic) -> list[analytics.Scope]:
    tenant_id = traffic.show.team.tenant_id
    return [
        analytics.Scope("tenant", tenant_id),
        analytics.Scope("podcast", tenant_id, uuid.UUID(traffic.show.podcast_id)),
        analytics.Scope("podcast", tenant_id, uuid.UUID(traffic.other_podcast_id)),
        analytics.Scope("episode", tenant_id, uuid.UUID(traffic.show.episode_ids[1])),
    ]


async def series_answers(db: Database, traffic: Traffic, metric: str, *, raw: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    first, last = traffic.days[-1], traffic.days[0]
    async with db.tenant_transaction(traffic.show.team.tenant_id) as session:
        for scope in scopes(traffic):
            for zone, interval in WAYS:
                buckets = analytics.make_buckets(first, last, ZoneInfo(zone), interval)
                key = f"{scope.kind}:{scope.id}:{zone}:{interval}"
                try:
                    found[key] = await analytics.series(session, scope, metric, buckets, from_raw=raw)
                except analytics.Unsupported as exc:  # IAB listeners exist for UTC days only
                    assert metric == "listeners" and (zone != "UTC" or interval == "hour"), exc
                    found[key] = "unsupported"
    return found


async def check_series(db: Database, traffic: Traffic, metric: str) -> None:
    served = await series_answers(db, traffic, metric, raw=False)
    recomputed = await series_answers(db, traffic, metric, raw=True)
    assert served == recomputed
    tenant_daily = served["tenant:None:UTC:day"][0]
    assert any(value for value in tenant_daily), "the data must show in the answer"


@pytest.mark.parametrize("metric", analytics.METRICS)
async def test_each_metric_is_the_same_from_rollups_and_from_raw_events(
    metric: str, traffic: Traffic, db: Database, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    await check_series(db, traffic, metric)  # all pending: the raw tail alone
    await rollups_service.refresh_all(db)
    await check_series(db, traffic, metric)  # from the rollups alone
    await add_traffic(client, traffic.show, recorder, traffic.days[:3], random.Random(5), count=120)
    await check_series(db, traffic, metric)  # rollups with pending days on top


async def other_answers(db: Database, traffic: Traffic, *, raw: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    first, last = traffic.days[-1], traffic.days[0]
    now = datetime.now(UTC)
    async with db.tenant_transaction(traffic.show.team.tenant_id) as session:
        for scope in scopes(traffic):
            name = f"{scope.kind}:{scope.id}"
            for zone in ("UTC", "Europe/Berlin", "Asia/Kolkata"):
                summary = await analytics.summary(session, scope, first, last, ZoneInfo(zone), from_raw=raw)
                found[f"{name}:summary:{zone}"] = summary
                for metric in analytics.TOP_METRICS:
                    found[f"{name}:top:{metric}:{zone}"] = await analytics.top_episodes(
                        session, scope, metric, first, last, ZoneInfo(zone), 10, from_raw=raw
                    )
            for by in analytics.DIMENSIONS:
                found[f"{name}:{by}"] = await analytics.download_breakdown(
                    session, scope, by, first, last, from_raw=raw
                )
            found[f"{name}:types"] = await analytics.event_type_breakdown(session, scope, first, last, from_raw=raw)
            found[f"{name}:launch"] = await analytics.launch_curves(session, scope, now, from_raw=raw)
    return found


async def test_summaries_top_episodes_breakdowns_and_launch_curves_are_the_same_from_raw_events(
    traffic: Traffic, db: Database, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    assert await other_answers(db, traffic, raw=False) == await other_answers(db, traffic, raw=True)
    await rollups_service.refresh_all(db)
    served = await other_answers(db, traffic, raw=False)
    assert served == await other_answers(db, traffic, raw=True)
    await add_traffic(client, traffic.show, recorder, traffic.days[:2], random.Random(9), count=100)
    assert await other_answers(db, traffic, raw=False) == await other_answers(db, traffic, raw=True)
    # the answers carry the data
    tenant = "tenant:None"
    totals = {item["metric"]: item["value"] for item in served[f"{tenant}:summary:UTC"]["metrics"]}
    assert totals["downloads"] > 0 and totals["plays"] > 0 and totals["unique_listeners"] > 0
    assert served[f"{tenant}:top:downloads:UTC"] and served[f"{tenant}:country"]
    launched = served[f"{tenant}:launch"]["episodes"]
    assert [item["episode_id"] for item in launched] == [
        uuid.UUID(episode) for episode in sorted(traffic.published, key=lambda e: traffic.published[e], reverse=True)
    ]
    assert launched[1]["day_7"] is not None and launched[1]["day_7"] >= launched[1]["day_1"] > 0
    assert launched[0]["day_30"] is None  # not thirty days old yet


async def test_unique_listeners_over_whole_months_use_monthly_bitmaps_and_equal_raw_counts(
    traffic: Traffic, db: Database, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    today = traffic.days[0]
    days = [today - timedelta(days=n) for n in range(75)]  # two whole months at least
    await add_traffic(client, traffic.show, recorder, days, random.Random(21), count=600)
    await rollups_service.refresh_all(db)
    tenant_id = traffic.show.team.tenant_id
    first, last = days[-1], today

    async def answers(raw: bool) -> list[Any]:
        found = []
        async with db.tenant_transaction(tenant_id) as session:
            for scope in scopes(traffic):
                for interval in ("month", "week"):
                    buckets = analytics.make_buckets(first, last, ZoneInfo("UTC"), interval)
                    found.append(await analytics.unique_listeners(session, scope, buckets, from_raw=raw))
                whole = [analytics.period(first, last, ZoneInfo("UTC"))]
                found.append(await analytics.unique_listeners(session, scope, whole, from_raw=raw))
        return found

    assert await answers(False) == await answers(True)
    async with db.tenant_transaction(tenant_id) as session:
        months = (await session.execute(text("SELECT count(DISTINCT month) FROM listener_monthly"))).scalar_one()
    assert months >= 3
    # a late event in the middle of a whole month: that month is read day by day until the refresh
    middle = (today.replace(day=1) - timedelta(days=20)).replace(day=15)
    late = listener_event(
        traffic.show.episode_ids[0], listener_id="late-comer",
        occurred_at=datetime.combine(middle, time(10), tzinfo=UTC).isoformat(),
    )  # fmt: skip
    posted = await client.post("/v1/events/listener", json=[late], headers=traffic.show.team.auth("owner"))
    assert posted.json()["accepted"] == 1
    before = await answers(False)
    assert before == await answers(True)
    await rollups_service.refresh_all(db)
    assert await answers(False) == before


async def test_totals_over_months_use_monthly_totals_and_equal_raw_counts(
    traffic: Traffic, db: Database, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    today = traffic.days[0]
    days = [today - timedelta(days=n) for n in range(75)]  # two whole months at least
    await add_traffic(client, traffic.show, recorder, days, random.Random(23), count=600)
    await rollups_service.refresh_all(db)
    tenant_id = traffic.show.team.tenant_id
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    month_before = (last_month - timedelta(days=1)).replace(day=1)
    ranges = [
        (days[-1], today),  # whole months inside
        (month_before + timedelta(days=2), last_month + timedelta(days=26)),  # two months less a few days each
    ]
    for first, last in ranges:
        plan = sources.plan_months(sources.bucket_edges([analytics.period(first, last, ZoneInfo("UTC"))]), [])
        assert plan is not None and len(plan.months) >= 2
    assert any(sign < 0 for _, _, sign in plan.days)  # the second range takes the days it leaves out away

    async def answers(raw: bool) -> dict[str, Any]:
        found: dict[str, Any] = {}
        async with db.tenant_transaction(tenant_id) as session:
            for first, last in ranges:
                for scope in scopes(traffic):
                    name = f"{first}:{scope.kind}:{scope.id}"
                    found[f"{name}:summary"] = await analytics.summary(
                        session, scope, first, last, ZoneInfo("UTC"), from_raw=raw
                    )
                    for metric in analytics.TOP_METRICS:
                        found[f"{name}:top:{metric}"] = await analytics.top_episodes(
                            session, scope, metric, first, last, ZoneInfo("UTC"), 10, from_raw=raw
                        )
                    for metric in ("downloads", "plays", "avg_listen_seconds"):
                        for interval in ("month", "week"):
                            buckets = analytics.make_buckets(first, last, ZoneInfo("UTC"), interval)
                            found[f"{name}:{metric}:{interval}"] = await analytics.series(
                                session, scope, metric, buckets, from_raw=raw
                            )
        return found

    async def monthly_equal_daily_sums() -> None:
        async with db.tenant_transaction(tenant_id) as session:
            for daily, monthly, column in (
                ("listener_daily", "listener_totals_monthly", "plays"),
                ("download_listeners_daily", "download_totals_monthly", "downloads"),
            ):
                summed = (
                    await session.execute(
                        text(
                            f"SELECT scope_id, date_trunc('month', day)::date, sum({column}) FROM {daily} "
                            f"GROUP BY 1, 2 HAVING sum({column}) <> 0 ORDER BY 1, 2"
                        )
                    )
                ).all()
                stored = (
                    await session.execute(
                        text(f"SELECT scope_id, month, {column} FROM {monthly} WHERE {column} <> 0 ORDER BY 1, 2")
                    )
                ).all()
                assert [tuple(row) for row in stored] == [tuple(row) for row in summed] and stored, monthly

    assert await answers(False) == await answers(True)
    await monthly_equal_daily_sums()
    # late traffic in the middle of a whole month: that month is read day by day until the refresh adds it
    middle = (today.replace(day=1) - timedelta(days=20)).replace(day=15)
    await add_traffic(client, traffic.show, recorder, [middle], random.Random(29), count=40)
    before = await answers(False)
    assert before == await answers(True)
    await rollups_service.refresh_all(db)
    assert await answers(False) == before
    await monthly_equal_daily_sums()
    # a rebuild sums the months again: the same totals
    async with db.tenant_transaction(tenant_id) as session:
        await rollups_service.rebuild(session, tenant_id, first, last, kinds=("listener", "download"))
    await monthly_equal_daily_sums()
    assert await answers(False) == before
