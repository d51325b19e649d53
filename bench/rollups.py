"""Benchmark: one rollup refresh cycle after 2,000 new events, when the day already holds a small and a
large number of events of the same tenant (issue 19).

Against a fresh PostgreSQL (embedded, or a scratch database on ``DATABASE_URL``'s server), migrated by
castmetrics: for each size, a tenant of its own (one podcast, 50 episodes) receives ``size`` listener
events spread over today through the ingestion path (batches of 10,000, one transaction each), the
rollups are brought up to date, then three times: a batch of 2,000 new events (new and returning
listeners) and one refresh cycle (``rollups.service.refresh_cycle``, as the job and ``castmetrics rollups
refresh`` run it), timed alone. The reference is the small day's cycle in the same run.

Targets: the large day's cycle (median) costs at most 1.5 × the small day's, and at most 0.5 s. Run
``python -m bench.rollups [--large 500000]`` from the repository root; prints JSON and writes
``bench/results/rollups.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.ingest import APP_ROLE, _setup_tenant, fresh_database

RESULTS = Path(__file__).resolve().parent / "results" / "rollups.json"
NEW_EVENTS = 2_000
BATCH = 10_000
TYPES = ("download", "play", "play", "pause", "resume", "seek", "skip", "progress", "complete")


def _events(count: int, episode_ids: list[str], listeners: int, rng: random.Random) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = max(1.0, (now - midnight).total_seconds() - 1)
    return [
        {
            "id": str(uuid.uuid4()),
            "episode_id": rng.choice(episode_ids),
            "listener_id": f"listener-{rng.randrange(listeners)}",
            "event_type": rng.choice(TYPES),
            "occurred_at": (midnight + timedelta(seconds=rng.random() * span)).isoformat(),
            "event_data": {"listened_seconds": rng.randrange(600)},
        }
        for _ in range(count)
    ]


async def _ingest(runtime: Any, tenant_id: uuid.UUID, events: list[dict[str, Any]]) -> None:
    from castmetrics.events import service
    from castmetrics.tenancy.models import Tenant

    for start in range(0, len(events), BATCH):
        async with runtime.tenant_transaction(tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            chunk = events[start : start + BATCH]
            result = await service.ingest(
                session, tenant, "listener", enumerate(chunk), db=runtime, retention_days=730, enforce_limits=False
            )
            assert result.accepted == len(chunk), result.rejected[:3]


async def _measure(owner_url: str, runtime_url: str, size: int, rng: random.Random) -> dict[str, Any]:
    from castmetrics.db.session import Database
    from castmetrics.rollups import service as rollups

    setup = await _setup_tenant(owner_url, runtime_url)
    tenant_id, episodes = setup["tenant_id"], setup["episode_ids"]
    listeners = max(1_000, size // 10)
    runtime = Database(runtime_url, pool_size=2, max_overflow=0, application_name="bench-rollups")
    try:
        clock = time.perf_counter()
        await _ingest(runtime, tenant_id, _events(size, episodes, listeners, rng))
        loaded = time.perf_counter() - clock
        while (await rollups.refresh_cycle(runtime, cycle_events=10**9, tenant_ids=[tenant_id])).events:
            pass
        cycles = []
        for _ in range(3):
            # half of the new events from listeners the day knows, half from new ones
            await _ingest(runtime, tenant_id, _events(NEW_EVENTS, episodes, listeners * 2, rng))
            cycle = await rollups.refresh_cycle(runtime, cycle_events=10**9, tenant_ids=[tenant_id])
            assert cycle.events == NEW_EVENTS, cycle.as_dict()
            cycles.append(round(cycle.seconds, 4))
    finally:
        await runtime.dispose()
    return {
        "day_events": size + 3 * NEW_EVENTS,
        "load_seconds": round(loaded, 1),
        "cycle_seconds": cycles,
        "median": statistics.median(cycles),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=500_000)
    args = parser.parse_args()
    from castmetrics.config import Settings
    from castmetrics.db import migrate

    rng = random.Random(19)
    with tempfile.TemporaryDirectory() as root, fresh_database(Path(root)) as owner_url:
        runtime_url = migrate.migrate(Settings(database_url=owner_url, app_role=APP_ROLE), owner_url)
        small = asyncio.run(_measure(owner_url, runtime_url, args.small, rng))
        large = asyncio.run(_measure(owner_url, runtime_url, args.large, rng))
    ratio = large["median"] / small["median"]
    report = {
        "benchmark": "rollup refresh cycle after 2,000 new events, one tenant",
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "small": small,
        "large": large,
        "ratio_large_to_small": round(ratio, 2),
        "targets": {
            "ratio_at_most_1_5": ratio <= 1.5,
            "large_cycle_at_most_0_5_s": large["median"] <= 0.5,
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
