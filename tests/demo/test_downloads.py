"""Demo prefix traffic: the demo's listening also sends prefix requests, with a realistic app and country
mix and some bots, counted the IAB way and stored once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import text

from castmetrics.analytics import service as analytics
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo import audience, downloads, listening
from castmetrics.demo import service as demo
from castmetrics.measurement import useragents
from castmetrics.measurement.enrich import country_of
from castmetrics.rollups import service as rollups_service
from tests.support.clock import WEDNESDAY, pinned
from tests.support.partitions import drop_partitions_keeping

DAYS = 14


@pytest.fixture
async def drop_old_partitions(db: Database, owner_url: str) -> AsyncIterator[None]:
    yield
    await drop_partitions_keeping(db, owner_url, 2)


@pytest.mark.usefixtures("drop_old_partitions")
async def test_demo_listening_sends_prefix_requests_counted_once(
    owner_db: Database, db: Database, settings: Settings
) -> None:
    now = pinned(WEDNESDAY, time(14, 37))  # the same weekday and hour whatever day the tests run
    tenant_id = (await demo.seed(owner_db, db, settings, now=now)).tenant.id
    # The seed's new episodes queued a recount of the real clock's last days, which may lie after the
    # window: done now, so that what is pending below is what the generator left.
    await rollups_service.refresh_all(db)
    first = await listening.generate(db, tenant_id, 15_000, retention_days=730, now=now, days=DAYS, settings=settings)
    assert first.requests > 1_000 and first.requests_stored == first.requests
    assert 0.03 * first.requests < first.bot_requests < 0.12 * first.requests
    assert "Downloads: " in first.describe()

    async with db.tenant_transaction(tenant_id) as session:
        stored = (
            await session.execute(
                text(
                    "SELECT count(*) AS requests, count(*) FILTER (WHERE is_bot) AS bots, "
                    "count(*) FILTER (WHERE method = 'HEAD') AS heads, count(*) FILTER (WHERE is_probe) AS probes, "
                    "count(*) FILTER (WHERE episode_id IS NULL) AS unmatched, "
                    "count(DISTINCT (episode_id, client_hash)) FILTER (WHERE NOT is_bot AND method = 'GET' "
                    "AND NOT is_probe) AS counted FROM download_requests"
                )
            )
        ).one()
        downloads_total = (await session.execute(text("SELECT sum(downloads) FROM download_daily"))).scalar_one()
        pending = (
            await session.execute(text("SELECT count(*) FROM rollup_invalidations WHERE kind = 'download'"))
        ).scalar_one()
        last = now.date()
        scope = analytics.Scope("tenant", tenant_id)
        apps = await analytics.download_breakdown(session, scope, "app", last - timedelta(days=DAYS), last)
        countries = await analytics.download_breakdown(session, scope, "country", last - timedelta(days=DAYS), last)

    assert stored.requests == first.requests and stored.bots == first.bot_requests
    assert stored.heads > 0 and stored.probes > 0 and stored.unmatched == 0
    # Every request counts once per client, episode and UTC day (the salt changes daily); bots never.
    assert downloads_total == stored.counted > 0 and pending == 0
    keys = [row["key"] for row in apps]
    assert {"Apple Podcasts", "Spotify"} <= set(keys[:3]), apps[:5]
    assert "Pocket Casts" in keys and "Overcast" in keys
    bot_names = {entry.name for entry in useragents.default().lists["bots"].entries}
    assert not bot_names & set(keys)
    assert sum(row["downloads"] for row in apps) == downloads_total
    assert countries[0]["key"] == "US" and {"GB", "CA", "DE"} <= {row["key"] for row in countries}

    again = await listening.generate(db, tenant_id, 15_000, retention_days=730, now=now, days=DAYS, settings=settings)
    assert (again.requests, again.requests_stored) == (first.requests, 0)
    async with db.tenant_transaction(tenant_id) as session:
        assert (await session.execute(text("SELECT count(*) FROM download_requests"))).scalar_one() == first.requests


def _episode(published: datetime) -> audience.DemoEpisode:
    return audience.DemoEpisode(uuid.uuid4(), uuid.UUID(int=1), published, 1_800)


def test_requests_are_repeatable_and_each_listener_keeps_an_app_and_an_address() -> None:
    now = datetime(2026, 6, 10, 14, 37, tzinfo=UTC)
    episodes = [_episode(datetime(2020, 1, 1, tzinfo=UTC)), _episode(now - timedelta(days=4))]
    files = {str(e.id): downloads.AudioFile(f"cdn.example.com/{e.id}.mp3?x=1", 16_000.0) for e in episodes}

    def produce() -> tuple[audience.Plan, list[downloads.Request]]:
        plan = audience.plan(episodes, 6_000, now=now, days=20)
        traffic = downloads.Traffic(plan, "demo", files)
        sessions: audience.Sessions = []
        requests: list[downloads.Request] = []
        for _batch in plan.batches(size=1_000, sessions=sessions):
            requests += traffic.requests(sessions)
            sessions.clear()
        return plan, requests

    plan, requests = produce()
    assert requests == produce()[1]
    assert len({request_id for request_id, _ in requests}) == len(requests)
    assert all(plan.start.timestamp() <= raw.at < plan.until.timestamp() for _, raw in requests)
    clients: dict[tuple[str, str], set[str]] = {}
    for _, raw in requests:
        clients.setdefault((raw.address, raw.user_agent), set()).add(raw.url)
    by_address = Counter(address for address, _ in clients)
    assert max(by_address.values()) == 1  # one app per address (per listener)
    humans = [raw for _, raw in requests if not useragents.classify(raw.user_agent, raw.referer).is_bot]
    assert {country_of(raw.address) for raw in humans[:200]} >= {"US"}
    apple = [raw for raw in humans if raw.user_agent.startswith(("Podcasts/", "AppleCoreMedia/"))]
    assert apple and {raw.range for raw in apple} >= {"bytes=0-1", "bytes=0-"}
    assert any(raw.method == "HEAD" for raw in humans)
    assert any(raw.referer for raw in humans)  # a browser on a web player
