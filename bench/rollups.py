"""Benchmark: one rollup refresh cycle after 2,000 new events, when the day already holds a small and a
large number of events of the same tenant (issue 19).

Against a fresh PostgreSQL (embedded, or a scratch database on ``DATABASE_URL``'s server), migrated by
castmetrics: for each size, a tenant of its own (one podcast, 50 episodes) receives ``size`` listener
events spread over today through the ingestion path (batches of 10,000, one transaction each), the
rollups are brought up to date, then fifteen times: a batch of 2,000 new events (new and returning
listeners) and one refresh cycle (``rollups.service.refresh_cycle``, as the job and ``castmetrics rollups
refresh`` run it), timed alone. The reference is the small day's cycle in the same run.

The download side is measured the same way (issue 19 item 2): a tenant of its own per size receives ``size``
prefix requests spread over today (written as the recorder writes them: ``events.writer.write`` and the
log, batches of 10,000; clients making about three requests each, 3% bots, some HEAD requests, probes
and range-only clients that need two ranges to reach the minute of audio), then fifteen times 2,000 new
requests (half from clients the day knows) and one timed cycle.

Targets: the large day's cycle (median) costs at most 1.5 × the small day's, and at most 0.5 s. Run
``python -m bench.rollups [--small 50000] [--large 2000000]`` from the repository root; prints JSON and writes
``bench/results/rollups.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
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
CYCLES = 15  # timed cycles per size; the median is compared (fewer leave it to one or two noisy cycles)
NEW_EVENTS = 2_000
BATCH = 10_000
APPS = ("AppleCoreMedia", "Overcast", "Spotify", "Pocket Casts", "Castro")
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "Unknown")
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
        for _ in range(CYCLES):
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


def _requests(
    count: int, tenant_id: uuid.UUID, episode_ids: list[str], clients: int, rng: random.Random
) -> list[tuple[Any, ...]]:
    """Rows of ``download_requests`` (``events.writer.COLUMNS["download"]`` order) spread over today."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = max(1.0, (now - midnight).total_seconds() - 1)
    rows = []
    for _ in range(count):
        client = rng.randrange(clients)
        app, country = APPS[client % len(APPS)], COUNTRIES[client % len(COUNTRIES)]
        episode = episode_ids[(client + rng.randrange(3)) % len(episode_ids)]
        roll = rng.random()
        if roll < 0.55:
            header, length = "", None
        elif roll < 0.65:
            header, length = "bytes=0-1", 2
        else:  # a bounded range: two are needed for the minute (1,010,240 bytes)
            start = rng.choice((0, 600_000))
            header, length = f"bytes={start}-{start + 599_999}", 600_000
        rows.append(
            (
                tenant_id, uuid.uuid4(), uuid.UUID(episode), f"media.example.com/{episode}.mp3",
                hashlib.blake2b(f"client-{client}".encode(), digest_size=32).digest(), app, None,
                "HEAD" if rng.random() < 0.03 else "GET", header or None, length if header else None,
                length == 2, rng.random() < 0.03, "app", app, "iPhone", "mobile", "iOS", None, country,
                midnight + timedelta(seconds=rng.random() * span),
            )
        )  # fmt: skip
    return rows


async def _record(runtime: Any, tenant_id: uuid.UUID, rows: list[tuple[Any, ...]]) -> None:
    from castmetrics.events import partitions, writer
    from castmetrics.events import service as events

    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        by_day = writer.group_by_day(chunk)
        await partitions.ensure_days(runtime, by_day)
        async with runtime.tenant_transaction(tenant_id) as session:
            await writer.write(session, "download", chunk, by_day=by_day)
            await events.note_days(session, tenant_id, {day: len(day_rows) for day, day_rows in by_day.items()},
                                   kind="download")  # fmt: skip


async def _measure_downloads(owner_url: str, runtime_url: str, size: int, rng: random.Random) -> dict[str, Any]:
    from sqlalchemy import text

    from castmetrics.db.session import Database
    from castmetrics.rollups import service as rollups

    setup = await _setup_tenant(owner_url, runtime_url)
    tenant_id, episodes = setup["tenant_id"], setup["episode_ids"]
    owner = Database(owner_url, pool_size=1, max_overflow=0)
    try:
        async with owner.transaction() as session:  # one minute of audio is 1,000,000 bytes (+ the ID3 allowance)
            await session.execute(
                text("UPDATE episodes SET audio_length_bytes = 60000000, duration_seconds = 3600 WHERE tenant_id = :t"),
                {"t": tenant_id},
            )
    finally:
        await owner.dispose()
    clients = max(1_000, size // 3)
    runtime = Database(runtime_url, pool_size=2, max_overflow=0, application_name="bench-rollups")
    try:
        clock = time.perf_counter()
        await _record(runtime, tenant_id, _requests(size, tenant_id, episodes, clients, rng))
        loaded = time.perf_counter() - clock
        while (await rollups.refresh_cycle(runtime, cycle_events=10**9, tenant_ids=[tenant_id])).events:
            pass
        cycles = []
        for _ in range(CYCLES):
            # half of the new requests from clients the day knows, half from new ones
            await _record(runtime, tenant_id, _requests(NEW_EVENTS, tenant_id, episodes, clients * 2, rng))
            cycle = await rollups.refresh_cycle(runtime, cycle_events=10**9, tenant_ids=[tenant_id])
            assert cycle.events == NEW_EVENTS, cycle.as_dict()
            cycles.append(round(cycle.seconds, 4))
    finally:
        await runtime.dispose()
    return {
        "day_requests": size + 3 * NEW_EVENTS,
        "load_seconds": round(loaded, 1),
        "cycle_seconds": cycles,
        "median": statistics.median(cycles),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    args = parser.parse_args()
    from castmetrics.config import Settings
    from castmetrics.db import migrate

    rng = random.Random(19)
    with tempfile.TemporaryDirectory() as root, fresh_database(Path(root)) as owner_url:
        runtime_url = migrate.migrate(Settings(database_url=owner_url, app_role=APP_ROLE), owner_url)
        small = asyncio.run(_measure(owner_url, runtime_url, args.small, rng))
        large = asyncio.run(_measure(owner_url, runtime_url, args.large, rng))
        small_downloads = asyncio.run(_measure_downloads(owner_url, runtime_url, args.small, rng))
        large_downloads = asyncio.run(_measure_downloads(owner_url, runtime_url, args.large, rng))
    ratio = large["median"] / small["median"]
    download_ratio = large_downloads["median"] / small_downloads["median"]
    report = {
        "benchmark": "rollup refresh cycle after 2,000 new events, one tenant",
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "small": small,
        "large": large,
        "ratio_large_to_small": round(ratio, 2),
        "downloads": {
            "benchmark": "rollup refresh cycle after 2,000 new prefix requests, one tenant",
            "small": small_downloads,
            "large": large_downloads,
            "ratio_large_to_small": round(download_ratio, 2),
        },
        "targets": {
            "ratio_at_most_1_5": ratio <= 1.5,
            "large_cycle_at_most_0_5_s": large["median"] <= 0.5,
            "downloads_ratio_at_most_1_5": download_ratio <= 1.5,
            "downloads_large_cycle_at_most_0_5_s": large_downloads["median"] <= 0.5,
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
