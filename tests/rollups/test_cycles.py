"""Refresh cycles: each takes a bounded share of one tenant's backlog and all of a small tenant's new
events, continues where it stopped, and `castmetrics rollups refresh` runs one and says what it did."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.rollups import service as rollups


async def _episode(client: httpx.AsyncClient, team: Any) -> str:
    owner = team.auth("owner")
    podcast = await client.post("/v1/podcasts", json={"name": "Show"}, headers=owner)
    assert podcast.status_code == 201, podcast.text
    episode = await client.post(f"/v1/podcasts/{podcast.json()['id']}/episodes", json={"title": "E1"}, headers=owner)
    assert episode.status_code == 201, episode.text
    return str(episode.json()["id"])


async def _send(client: httpx.AsyncClient, team: Any, episode_id: str, count: int) -> None:
    """One batch of ``count`` plays an hour ago by 50 listeners."""
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    batch = [
        {
            "id": str(uuid.uuid4()),
            "episode_id": episode_id,
            "listener_id": f"l{n % 50}",
            "event_type": "play",
            "occurred_at": moment,
        }
        for n in range(count)
    ]
    response = await client.post("/v1/events/listener", json=batch, headers=team.auth("owner"))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == count


async def _rolled_up(db: Database, tenant_id: uuid.UUID) -> int:
    """Events in the tenant's daily rollups (the whole-tenant scope)."""
    async with db.tenant_transaction(tenant_id) as session:
        found = await session.execute(
            text("SELECT coalesce(sum(events), 0) FROM listener_daily WHERE scope_id = :all"), {"all": uuid.UUID(int=0)}
        )
        return int(found.scalar_one())


def _taken(cycle: rollups.Cycle, tenant_id: uuid.UUID) -> int:
    return sum(done.events for done in cycle.tenants if done.tenant_id == tenant_id)


async def test_a_flood_waits_its_turn_and_a_small_tenant_is_done_in_one_cycle(
    client: httpx.AsyncClient,
    db: Database,
    make_team: Any,
) -> None:
    # given a tenant with three batches of 400 new events and one with 30, and cycles of at most 500 events
    flood, small = await make_team("pro"), await make_team("pro")
    flood_episode, small_episode = await _episode(client, flood), await _episode(client, small)
    for _ in range(3):
        await _send(client, flood, flood_episode, 400)
    await _send(client, small, small_episode, 30)
    # when cycles run, then each takes one batch of the flood (two would pass 500) and all of the small tenant
    taken = []
    for _ in range(4):
        cycle = await rollups.refresh_cycle(db, cycle_events=500)
        taken.append((_taken(cycle, flood.tenant_id), _taken(cycle, small.tenant_id)))
        # what a cycle took is in the rollups, the rest is carried over (read from raw events meanwhile)
        assert await _rolled_up(db, flood.tenant_id) == sum(flood_taken for flood_taken, _ in taken)
    assert taken == [(400, 30), (400, 0), (400, 0), (0, 0)]
    assert await _rolled_up(db, flood.tenant_id) == 1200
    assert await _rolled_up(db, small.tenant_id) == 30


async def test_the_periodic_job_runs_bounded_cycles_one_after_the_other_while_new_rows_remain(
    client: httpx.AsyncClient, db: Database, make_team: Any
) -> None:
    # given a flood of three batches of 400 and cycles of at most 500 events
    flood = await make_team("pro")
    episode = await _episode(client, flood)
    for _ in range(3):
        await _send(client, flood, episode, 400)
    # when the job's loop runs with time to spare, then it runs a bounded cycle per batch and one that finds
    # nothing more, instead of one cycle per period
    cycles = await rollups.refresh_while_pending(db, cycle_events=500, budget_seconds=600)
    assert [cycle.events for cycle in cycles] == [400, 400, 400, 0]
    assert await _rolled_up(db, flood.tenant_id) == 1200
    # and with no time to spare it stops after one
    await _send(client, flood, episode, 400)
    await _send(client, flood, episode, 400)
    assert [cycle.events for cycle in await rollups.refresh_while_pending(db, cycle_events=500, budget_seconds=0)] == [
        400
    ]


async def test_a_batch_larger_than_a_cycle_is_taken_whole(
    client: httpx.AsyncClient, db: Database, make_team: Any
) -> None:
    team = await make_team("pro")
    episode = await _episode(client, team)
    await _send(client, team, episode, 300)
    await _send(client, team, episode, 20)
    first = await rollups.refresh_cycle(db, cycle_events=100, tenant_ids=[team.tenant_id])
    second = await rollups.refresh_cycle(db, cycle_events=100, tenant_ids=[team.tenant_id])
    third = await rollups.refresh_cycle(db, cycle_events=100, tenant_ids=[team.tenant_id])
    assert [first.events, second.events, third.events] == [300, 20, 0]
    assert [len(first.tenants), len(second.tenants), len(third.tenants)] == [1, 1, 0]
    assert first.buckets == second.buckets == 1
    assert await _rolled_up(db, team.tenant_id) == 320


def _refresh_cli(settings: Settings, *args: str, cycle_events: int) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "CASTMETRICS_APP_ROLE": settings.app_role,
        "CASTMETRICS_SECRET_KEY": settings.secret_key.get_secret_value(),
        "CASTMETRICS_LOG_LEVEL": "WARNING",
        "CASTMETRICS_ROLLUP_CYCLE_EVENTS": str(cycle_events),
    }
    return subprocess.run(
        [sys.executable, "-m", "castmetrics", "rollups", "refresh", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


async def test_the_refresh_command_runs_one_cycle_and_reports_it(
    client: httpx.AsyncClient, db: Database, make_team: Any, settings: Settings, runtime_url: str
) -> None:
    team = await make_team("pro")
    episode = await _episode(client, team)
    for _ in range(2):
        await _send(client, team, episode, 250)
    runs = [_refresh_cli(settings, "--tenant", team.slug, "--json", cycle_events=300) for _ in range(3)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    lines = [json.loads(run.stdout) for run in runs]
    assert [set(line) for line in lines] == [{"tenants", "buckets", "events", "seconds"}] * 3
    assert [(line["tenants"], line["buckets"], line["events"]) for line in lines] == [
        (1, 1, 250),
        (1, 1, 250),
        (0, 0, 0),
    ]
    assert all(isinstance(line["seconds"], float) and 0 <= line["seconds"] < 60 for line in lines)
    assert await _rolled_up(db, team.tenant_id) == 500
    # without --json, every tenant with pending work, in words
    await _send(client, team, episode, 5)
    worded = _refresh_cli(settings, cycle_events=300)
    assert worded.returncode == 0, worded.stderr
    assert f"{team.slug}: 5 new events and requests" in worded.stdout
    assert "One cycle:" in worded.stdout
    missing = _refresh_cli(settings, "--tenant", "no-such-tenant", cycle_events=300)
    assert missing.returncode == 2 and "no tenant" in missing.stderr


async def test_a_burst_gets_fresh_statistics_before_a_cycle_reads_it(
    client: httpx.AsyncClient, db: Database, owner_db: Database, make_team: Any
) -> None:
    # given a day partition with a pending batch, which then receives 12,000 rows at once (autovacuum off for
    # it, so that only the cycle may analyze it)
    team = await make_team("pro")
    episode = await _episode(client, team)
    await _send(client, team, episode, 10)
    async with owner_db.transaction() as session:
        day = (await session.execute(text("SELECT max(day) FROM rollup_invalidations"))).scalar_one()
        partition = f"castmetrics_events.listener_events_p{day:%Y%m%d}"
        await session.execute(text(f"ALTER TABLE {partition} SET (autovacuum_enabled = false)"))
    async with owner_db.tenant_transaction(team.tenant_id) as session:
        await session.execute(
            text(
                f"INSERT INTO {partition} (tenant_id, id, episode_id, listener_id, event_type, occurred_at) "
                "SELECT :t, gen_random_uuid(), :e, 'burst-' || n, 'play', :at FROM generate_series(1, 12000) n"
            ),
            {"t": team.tenant_id, "e": uuid.UUID(episode), "at": datetime.combine(day, datetime.min.time(), UTC)},
        )
        await session.execute(text("SELECT pg_stat_force_next_flush()"))
    modified = "SELECT pg_stat_get_mod_since_analyze(CAST(:p AS regclass))"
    for _ in range(100):  # the inserting server process reports its counts once idle
        async with owner_db.transaction() as session:
            if (await session.execute(text(modified), {"p": partition})).scalar_one() >= 12000:
                break
        await asyncio.sleep(0.05)
    # when a cycle runs, then it analyzes that partition first, once
    async with db.transaction() as session:
        assert (await session.execute(text("SELECT castmetrics_analyze_grown()"))).scalar_one() == [partition]
    async with db.transaction() as session:
        assert (await session.execute(text("SELECT castmetrics_analyze_grown()"))).scalar_one() == []
    async with owner_db.transaction() as session:
        assert (await session.execute(text(modified), {"p": partition})).scalar_one() == 0
