"""Incremental refresh: cycles that add new batches to the rollups leave them equal to a recount from raw
events, whatever mix of new, late, repeated and out-of-order events arrives across hour and day edges."""

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
from castmetrics.db.session import Database
from castmetrics.events import rollups as listener_rollups
from castmetrics.events import service as events
from castmetrics.rollups import service as rollups
from tests.support.rollups import whole_days

TYPES = ["play", "play", "pause", "resume", "progress", "skip", "complete", "download", "seek"]


async def _episodes(client: httpx.AsyncClient, team: Any) -> list[str]:
    owner, found = team.auth("owner"), []
    for show in ("A", "B"):
        podcast = await client.post("/v1/podcasts", json={"name": show}, headers=owner)
        assert podcast.status_code == 201, podcast.text
        for n in range(2):
            made = await client.post(
                f"/v1/podcasts/{podcast.json()['id']}/episodes", json={"title": f"{show}{n}"}, headers=owner
            )
            assert made.status_code == 201, made.text
            found.append(str(made.json()["id"]))
    return found


def _moment(rng: random.Random, now: datetime) -> datetime:
    """Mostly at the edges of hours and days (the last and first instants), over the last three days."""
    day = now.date() - timedelta(days=rng.randrange(4))
    hour = rng.randrange(24)
    edge = rng.choice(
        [timedelta(0), timedelta(hours=1) - timedelta(microseconds=1), timedelta(minutes=rng.randrange(60))]
    )
    moment = datetime.combine(day, time(hour), tzinfo=UTC) + edge
    return min(moment, now - timedelta(seconds=1))


async def _snapshot(db: Database, tenant_id: uuid.UUID) -> dict[str, list[Any]]:
    async with db.tenant_transaction(tenant_id) as session:
        tables = {
            table: list((await session.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2, 3"))).all())
            for table in ("listener_daily", "listener_hourly", "listener_monthly")
        }
    tables["listener_daily"] = whole_days(tables["listener_daily"])
    return tables


@pytest.mark.parametrize("fold", ["soon", "late"])
async def test_cycles_of_new_late_repeated_and_out_of_order_events_equal_a_recount(
    client: httpx.AsyncClient, db: Database, make_team: Any, monkeypatch: pytest.MonkeyPatch, fold: str
) -> None:
    if fold == "late":  # new listeners stay in ``recent`` until it outgrows the day's whole bitmap
        monkeypatch.setattr(listener_rollups, "FOLD_BYTES", 10**9)
        monkeypatch.setattr(listener_rollups, "FOLD_SHARE", 1)
    else:  # every cycle writes whole bitmaps
        monkeypatch.setattr(listener_rollups, "FOLD_BYTES", -1)
    rng = random.Random(19)
    team = await make_team("pro")
    episodes = await _episodes(client, team)
    now = datetime.now(UTC)
    sent: list[dict[str, Any]] = []
    for round_ in range(8):
        batch: list[dict[str, Any]] = []
        for _ in range(rng.randrange(50, 250)):
            data = {"listened_seconds": rng.randrange(0, 900)} if rng.random() < 0.4 else None
            batch.append(
                {
                    "id": str(uuid.uuid4()),
                    "episode_id": rng.choice(episodes),
                    "listener_id": f"l{rng.randrange(120)}",
                    "event_type": rng.choice(TYPES),
                    "occurred_at": _moment(rng, now).isoformat(),
                    **({"event_data": data} if data else {}),
                }
            )
        # retries of events already stored (they add nothing) and repeats inside the batch
        batch += rng.sample(sent, min(len(sent), 30)) + batch[:5]
        rng.shuffle(batch)  # out of order
        response = await client.post("/v1/events/listener", json=batch, headers=team.auth("owner"))
        assert response.status_code == 200, response.text
        known = {event["id"] for event in sent}
        sent += [event for event in {e["id"]: e for e in batch}.values() if event["id"] not in known]
        if round_ == 3:
            # a day noted outside any batch (as an older log row would be): recounted whole, leaving out the
            # batches still pending, which come later
            async with db.tenant_transaction(team.tenant_id) as session:
                await events.note_days(session, team.tenant_id, [now.date() - timedelta(days=1)])
        for _ in range(rng.randrange(3)):  # zero to two small cycles: part of the backlog is carried over
            await rollups.refresh_cycle(db, cycle_events=120, tenant_ids=[team.tenant_id])
    while (await rollups.refresh_cycle(db, cycle_events=120, tenant_ids=[team.tenant_id])).events:
        pass
    async with db.tenant_transaction(team.tenant_id) as session:
        assert (await session.execute(text("SELECT count(*) FROM rollup_invalidations"))).scalar_one() == 0
        stored = (await session.execute(text("SELECT count(*) FROM listener_events"))).scalar_one()
    assert stored == len(sent)
    async with db.tenant_transaction(team.tenant_id) as session:
        recent = (await session.execute(text("SELECT count(recent) FROM listener_daily"))).scalar_one()
    assert (recent > 0) == (fold == "late")
    # distinct listeners over several days (their bitmaps OR-ed, ``recent`` included) equal a raw count
    first = now.date() - timedelta(days=3)
    episode = analytics.Scope("episode", team.tenant_id, uuid.UUID(episodes[0]))
    for scope in (analytics.Scope("tenant", team.tenant_id), episode):
        buckets = analytics.make_buckets(first, now.date(), ZoneInfo("UTC"), "week")
        async with db.tenant_transaction(team.tenant_id) as session:
            rolled = await analytics.series(session, scope, "unique_listeners", buckets)
            assert rolled == await analytics.series(session, scope, "unique_listeners", buckets, from_raw=True)
    incremental = await _snapshot(db, team.tenant_id)
    # a rebuild recounts every day from raw events: the same rows, listeners' bitmaps included
    async with db.tenant_transaction(team.tenant_id) as session:
        for table in ("listener_daily", "listener_hourly", "listener_monthly"):
            await session.execute(text(f"DELETE FROM {table}"))
        await rollups.rebuild(session, team.tenant_id, first, now.date())
    assert await _snapshot(db, team.tenant_id) == incremental
    # and so does ``rebuild_range``, a day per chunk and two chunks side by side (the CLI's way)
    async with db.tenant_transaction(team.tenant_id) as session:
        for table in ("listener_daily", "listener_hourly", "listener_monthly"):
            await session.execute(text(f"DELETE FROM {table}"))
    rebuilt = await rollups.rebuild_range(
        db, team.tenant_id, first - timedelta(days=1), now.date(), ("listener", "download"),
        keep_from=first, chunk_days=1, jobs=2,
    )  # fmt: skip
    assert (rebuilt.days, rebuilt.skipped) == (4, [first - timedelta(days=1)])
    assert await _snapshot(db, team.tenant_id) == incremental
    tenant_days = [row for row in incremental["listener_daily"] if row["scope_id"] == uuid.UUID(int=0)]
    assert sum(row["events"] for row in tenant_days) == len(sent)
