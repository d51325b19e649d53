"""Rollups: incremental refresh, the raw tail, rebuilds, and analytics answers equal to raw counts."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text

from castmetrics.analytics import service as analytics
from castmetrics.db.session import Database
from castmetrics.rollups import service as rollups_service
from tests.factories.events import Catalog, listener_event
from tests.support.rollups import whole_days

TYPES = ["play", "play", "play", "pause", "resume", "progress", "skip", "complete", "download", "seek"]


def random_events(catalog: Catalog, days: list[date], count: int, rng: random.Random) -> list[dict[str, Any]]:
    episodes = catalog.episode_ids + catalog.other_episode_ids
    events = []
    for _ in range(count):
        day = rng.choice(days)
        moment = datetime.combine(day, time.min, tzinfo=UTC) + timedelta(seconds=rng.randrange(86_400))
        moment = min(moment, datetime.now(UTC))
        data = {"listened_seconds": rng.randrange(0, 600)} if rng.random() < 0.5 else None
        events.append(
            listener_event(
                rng.choice(episodes),
                listener_id=f"l{rng.randrange(40)}",
                event_type=rng.choice(TYPES),
                occurred_at=moment.isoformat(),
                event_data=data,
            )
        )
    return events


async def rollup_rows(db: Database, tenant_id: uuid.UUID) -> tuple[list[dict[str, Any]], list[Any]]:
    async with db.tenant_transaction(tenant_id) as session:
        daily = (
            await session.execute(
                text(
                    "SELECT day, scope_id, events, downloads, plays, pauses, resumes, seeks, skips, progresses, "
                    "completes, unique_listeners, listen_seconds, listeners, recent FROM listener_daily ORDER BY 1, 2"
                )
            )
        ).all()
        hourly = (await session.execute(text("SELECT * FROM listener_hourly ORDER BY scope_id, hour"))).all()
    return whole_days(daily), hourly


async def raw_rows(db: Database, tenant_id: uuid.UUID) -> list[Any]:
    async with db.tenant_transaction(tenant_id) as session:
        return (
            await session.execute(
                text(
                    "SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, episode_id, count(*), "
                    "count(DISTINCT listener_id), coalesce(sum((event_data->>'listened_seconds')::numeric), 0) "
                    "FROM listener_events GROUP BY 1, 2 ORDER BY 1, 2"
                )
            )
        ).all()


ZONES = [("UTC", "day"), ("UTC", "week"), ("UTC", "hour"), ("America/New_York", "day"), ("Asia/Kolkata", "day")]


async def answers(db: Database, catalog: Catalog, first: date, last: date, *, raw: bool) -> dict[str, Any]:
    """Every listener metric for every scope by UTC day and week, by hour, by day in a zone of whole-hour
    offsets (hourly rollups) and in one of half-hour offsets (raw events), the summary, the top
    episodes and the event-type breakdowns: from rollups+tail or raw only."""
    tenant_id = catalog.team.tenant_id
    scopes = [
        analytics.Scope("tenant", tenant_id),
        analytics.Scope("podcast", tenant_id, uuid.UUID(catalog.podcast_id)),
        analytics.Scope("episode", tenant_id, uuid.UUID(catalog.episode_ids[0])),
    ]
    found: dict[str, Any] = {}
    async with db.tenant_transaction(tenant_id) as session:
        for scope in scopes:
            for zone, interval in ZONES:
                buckets = analytics.make_buckets(first, last, ZoneInfo(zone), interval)
                for metric in analytics.LISTENER_METRICS:
                    key = f"{scope.kind}:{metric}:{zone}:{interval}"
                    found[key] = await analytics.series(session, scope, metric, buckets, from_raw=raw)
            found[f"{scope.kind}:types"] = await analytics.event_type_breakdown(
                session, scope, first, last, from_raw=raw
            )
            summary = await analytics.summary(session, scope, first, last, ZoneInfo("UTC"), from_raw=raw)
            found[f"{scope.kind}:summary"] = summary
            for metric in analytics.TOP_METRICS:
                found[f"{scope.kind}:top:{metric}"] = await analytics.top_episodes(
                    session, scope, metric, first, last, ZoneInfo("Europe/Paris"), 5, from_raw=raw
                )
    return found


async def test_incremental_refreshes_and_rebuild_agree_with_raw_events(
    client: httpx.AsyncClient, catalog: Catalog, db: Database
) -> None:
    rng = random.Random(7)
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in range(6)]
    owner = catalog.team.auth("owner")
    tenant_id = catalog.team.tenant_id
    # batches arrive over time, with refreshes in between and late events for refreshed days
    for round_ in range(4):
        batch = random_events(catalog, days, 300, rng)
        response = await client.post("/v1/events/listener", json=batch, headers=owner)
        assert response.json()["accepted"] == 300
        # answers are current before any refresh (the raw tail) ...
        assert await answers(db, catalog, days[-1], today, raw=False) == await answers(
            db, catalog, days[-1], today, raw=True
        )
        if round_ % 2 == 0:
            await rollups_service.refresh_all(db)
    await rollups_service.refresh_all(db)
    async with db.tenant_transaction(tenant_id) as session:
        assert (await session.execute(text("SELECT count(*) FROM rollup_invalidations"))).scalar_one() == 0
    # ... and after it, served from the rollups alone
    assert await answers(db, catalog, days[-1], today, raw=False) == await answers(
        db, catalog, days[-1], today, raw=True
    )
    incremental = await rollup_rows(db, tenant_id)
    # the rollups equal a recount from raw events
    episodes = set(map(uuid.UUID, catalog.episode_ids + catalog.other_episode_ids))
    recount = [
        (r["day"], r["scope_id"], r["events"], r["unique_listeners"], r["listen_seconds"])
        for r in incremental[0]
        if r["scope_id"] in episodes
    ]
    assert recount == [tuple(row) for row in await raw_rows(db, tenant_id)]
    assert {r["scope_id"] for r in incremental[0]} == episodes | {uuid.UUID(catalog.podcast_id), analytics.ALL} | {
        uuid.UUID(catalog.other_podcast_id)
    }
    # a rebuild from raw events gives the same rows
    async with db.tenant_transaction(tenant_id) as session:
        await session.execute(text("DELETE FROM listener_daily"))
        await session.execute(text("DELETE FROM listener_hourly"))
        assert await rollups_service.rebuild(session, tenant_id, days[-1], today) == 6
    assert await rollup_rows(db, tenant_id) == incremental


async def test_routes_answer_every_day_with_zeros_filled(client: httpx.AsyncClient, catalog: Catalog) -> None:
    owner = catalog.team.auth("owner")
    today = datetime.now(UTC).date()
    two_days_ago = datetime.combine(today - timedelta(days=2), time(12), tzinfo=UTC)
    midnight = datetime.combine(today, time.min, tzinfo=UTC)
    episode = catalog.episode_ids[0]
    batch = [
        listener_event(episode, listener_id="a", event_type="play", occurred_at=two_days_ago.isoformat()),
        listener_event(episode, listener_id="a", event_type="complete", occurred_at=two_days_ago.isoformat()),
        listener_event(episode, listener_id="b", event_type="play", occurred_at=two_days_ago.isoformat()),
        # today's, even in the first minutes after midnight (the default, five minutes ago, is yesterday then)
        listener_event(catalog.episode_ids[1], listener_id="a", event_type="play", occurred_at=midnight.isoformat()),
    ]
    assert (await client.post("/v1/events/listener", json=batch, headers=owner)).json()["accepted"] == 4
    start = (today - timedelta(days=3)).isoformat()
    series = await client.get(
        f"/v1/analytics/episodes/{episode}/timeseries",
        params={"metric": "plays", "from": start, "to": today.isoformat()},
        headers=catalog.team.auth("viewer"),
    )
    assert series.status_code == 200, series.text
    body = series.json()
    assert body["metric"] == "plays" and body["interval"] == "day"
    assert [p["value"] for p in body["points"]] == [0, 2, 0, 0]
    assert body["points"][0]["bucket"].startswith(start)
    tenant = await client.get(
        "/v1/analytics/tenant/timeseries",
        params={"metric": "unique_listeners", "from": start, "to": today.isoformat()},
        headers=owner,
    )
    assert [p["value"] for p in tenant.json()["points"]][1:] == [2, 0, 1]
    breakdown = await client.get(
        f"/v1/analytics/podcasts/{catalog.podcast_id}/breakdown",
        params={"by": "event_type", "from": start},
        headers=owner,
    )
    assert breakdown.json() == {
        "by": "event_type",
        "items": [{"key": "play", "count": 3}, {"key": "complete", "count": 1}],
    }


async def test_analytics_validation_and_isolation(client: httpx.AsyncClient, catalog: Catalog, make_team) -> None:  # type: ignore[no-untyped-def]
    owner = catalog.team.auth("owner")
    other = await make_team("pro")
    cases = [
        ("/v1/analytics/tenant/timeseries", {"metric": "hugs"}, 422),
        ("/v1/analytics/tenant/timeseries", {"metric": "plays", "tz": "Mars/Base"}, 422),
        ("/v1/analytics/tenant/timeseries", {"metric": "plays", "from": "2026-11-20", "to": "2026-11-10"}, 422),
        ("/v1/analytics/tenant/timeseries", {"metric": "plays", "from": "2020-01-01", "to": "2026-01-01"}, 422),
        ("/v1/analytics/tenant/timeseries", {"metric": "plays", "from": "2026-11-20T10:00"}, 422),
        ("/v1/analytics/tenant/breakdown", {"by": "mood"}, 422),
        (f"/v1/analytics/episodes/{uuid.uuid4()}/timeseries", {"metric": "plays"}, 404),
    ]
    for path, params, status in cases:
        response = await client.get(path, params=params, headers=owner)
        assert response.status_code == status, (path, params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    theirs = await client.get(
        f"/v1/analytics/podcasts/{catalog.podcast_id}/timeseries",
        params={"metric": "plays"},
        headers=other.auth("owner"),
    )
    assert theirs.status_code == 404


async def test_other_time_zones_bucket_days_locally(client: httpx.AsyncClient, catalog: Catalog) -> None:
    owner = catalog.team.auth("owner")
    today = datetime.now(UTC).date()
    # 23:30 UTC two days ago is already the next day in Tokyo
    late = datetime.combine(today - timedelta(days=2), time(23, 30), tzinfo=UTC)
    batch = [listener_event(catalog.episode_ids[0], occurred_at=late.isoformat())]
    assert (await client.post("/v1/events/listener", json=batch, headers=owner)).json()["accepted"] == 1
    params = {"metric": "plays", "from": (today - timedelta(days=2)).isoformat(), "to": today.isoformat()}
    utc = await client.get("/v1/analytics/tenant/timeseries", params=params, headers=owner)
    tokyo = await client.get("/v1/analytics/tenant/timeseries", params={**params, "tz": "Asia/Tokyo"}, headers=owner)
    assert [p["value"] for p in utc.json()["points"]] == [1, 0, 0]
    assert [p["value"] for p in tokyo.json()["points"]] == [0, 1, 0]
    assert tokyo.json()["points"][0]["bucket"].endswith("+09:00")


def test_scattered_pending_days_are_recounted_run_by_run() -> None:
    d = date(2026, 11, 1)
    days = [d + timedelta(days=n) for n in (9, 0, 1, 2, 300, 10)]
    assert analytics.runs(days) == [
        [d, d + timedelta(days=1), d + timedelta(days=2)],
        [d + timedelta(days=9), d + timedelta(days=10)],
        [d + timedelta(days=300)],
    ]
