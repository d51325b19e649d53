"""Benchmark: bytes per stored event in columnar day partitions on a Citus cluster, and ingestion on the
cluster beside one server (issue 20).

Starts a coordinator and two workers of the installed Citus (``tests/support/citus.py``, as the cluster
suite does; README, "Running the suite on Citus"), migrates castmetrics onto it, and stores for one tenant
(50 episodes), on a day ``--days-ago`` days back: ``--events`` listener events (client-supplied UUID ids,
``listened_seconds`` and ``position`` in ``event_data``; the ingestion service, batches of 10,000) and
``--requests`` prefix download requests (as the recorder writes them). Then ``castmetrics partitions
maintain``'s job converts that day to columnar storage. Bytes per event: the day partition's total size on
the workers (indexes included) plus, for listener events, the digests kept for their idempotency
(``event_digests``), divided by the rows; before (heap) and after (columnar). The same data on the embedded
single server gives the plain-PostgreSQL figures and the ingestion rate beside the cluster's.

Target: <= 40 bytes per listener event in columnar storage (goal 25). Run ``python -m bench.columnar`` from the
repository root; prints JSON and writes ``bench/results/columnar.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.ingest import APP_ROLE, fresh_database

RESULTS = Path(__file__).resolve().parent / "results" / "columnar.json"
BATCH = 10_000
TYPES = ("play", "play", "pause", "resume", "seek", "progress", "progress", "complete")


def _events(count: int, episodes: list[uuid.UUID], day: datetime, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid4()),
            "episode_id": str(rng.choice(episodes)),
            "listener_id": f"listener-{rng.randrange(max(1, count // 10))}",
            "event_type": rng.choice(TYPES),
            "occurred_at": (day + timedelta(seconds=rng.random() * 86_399)).isoformat(),
            "event_data": {"listened_seconds": rng.randrange(600), "position": rng.randrange(3600)},
        }
        for _ in range(count)
    ]


def _requests(count: int, tenant_id: uuid.UUID, episodes: list[uuid.UUID], day: datetime, rng: random.Random) -> list[
    tuple[Any, ...]
]:  # fmt: skip
    rows = []
    for _ in range(count):
        client = rng.randrange(max(1, count // 3))
        episode = rng.choice(episodes)
        ranged = rng.random() < 0.4
        rows.append(
            (
                tenant_id, uuid.uuid4(), episode, f"media.example.com/{episode}.mp3",
                hashlib.blake2b(f"client-{client}".encode(), digest_size=32).digest(), "AppleCoreMedia/1.0", None,
                "GET", "bytes=0-599999" if ranged else None, 600_000 if ranged else None, False, False, "app",
                "Apple Podcasts", "iPhone", "mobile", "iOS", None, "US", day + timedelta(seconds=rng.random() * 86_399),
            )
        )  # fmt: skip
    return rows


async def _measure(owner_url: str, runtime_url: str, args: argparse.Namespace, cluster: bool) -> dict[str, Any]:
    from sqlalchemy import text

    from castmetrics.auth.principal import Actor
    from castmetrics.db.session import Database
    from castmetrics.events import partitions, writer
    from castmetrics.events import service as events
    from castmetrics.events.partitions import partition_name
    from castmetrics.tenancy import service as tenancy
    from castmetrics.tenancy.schemas import TenantCreate

    rng = random.Random(20)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=args.days_ago)
    owner = Database(owner_url, pool_size=1, max_overflow=0)
    runtime = Database(runtime_url, pool_size=2, max_overflow=0, application_name="bench-columnar")
    size = "citus_total_relation_size" if cluster else "pg_total_relation_size"
    try:
        async with owner.transaction() as session:
            slug = f"columnar-{uuid.uuid4().hex[:8]}"
            data = TenantCreate(name="Columnar", slug=slug, subscription_tier="enterprise")
            tenant = await tenancy.create(session, data, Actor.system("bench"))
        podcast, episodes = uuid.uuid4(), [uuid.uuid4() for _ in range(50)]
        async with runtime.tenant_transaction(tenant.id) as session:
            await session.execute(
                text("INSERT INTO podcasts (tenant_id, id, name) VALUES (:t, :p, 'Bench')"),
                {"t": tenant.id, "p": podcast},
            )
            for n, episode in enumerate(episodes):
                await session.execute(
                    text("INSERT INTO episodes (tenant_id, id, podcast_id, guid, title) VALUES (:t, :e, :p, :g, :n)"),
                    {"t": tenant.id, "e": episode, "p": podcast, "g": str(episode), "n": f"Episode {n}"},
                )
        listener = _events(args.events, episodes, day, rng)
        started = time.perf_counter()
        for start in range(0, len(listener), BATCH):
            async with runtime.tenant_transaction(tenant.id) as session:
                result = await events.ingest(
                    session, tenant, "listener", enumerate(listener[start : start + BATCH]), db=runtime,
                    retention_days=730, enforce_limits=False,
                )  # fmt: skip
                assert result.accepted == len(listener[start : start + BATCH]), result.as_dict()
        ingest_seconds = time.perf_counter() - started
        requests = _requests(args.requests, tenant.id, episodes, day, rng)
        for start in range(0, len(requests), BATCH):
            chunk = requests[start : start + BATCH]
            by_day = writer.group_by_day(chunk)
            await partitions.ensure_days(runtime, by_day)
            async with runtime.tenant_transaction(tenant.id) as session:
                await writer.write(session, "download", chunk, by_day=by_day)

        async def bytes_per_row(kind: str, rows: int, digests: bool) -> float:
            async with owner.transaction() as session:
                table = f"castmetrics_events.{partition_name(kind, day.date())}"
                total = (await session.execute(text(f"SELECT {size}(CAST(:t AS regclass))"), {"t": table})).scalar_one()
                if digests and cluster:
                    total += (await session.execute(text(f"SELECT {size}('event_digests'::regclass)"))).scalar_one()
            return round(total / rows, 1)

        heap = {
            "listener_event": await bytes_per_row("listener", args.events, False),
            "download_request": await bytes_per_row("download", args.requests, False),
        }
        report: dict[str, Any] = {
            "ingest_events_per_second": round(args.events / ingest_seconds),
            "heap_bytes_per_row": heap,
        }
        if cluster:
            started = time.perf_counter()
            done = await partitions.maintain(runtime, 730, columnar_after_days=args.days_ago - 1)
            report["conversion_seconds"] = round(time.perf_counter() - started, 1)
            report["converted"] = done["columnar"]
            report["columnar_bytes_per_row"] = {
                "listener_event": await bytes_per_row("listener", args.events, True),
                "download_request": await bytes_per_row("download", args.requests, False),
            }
            async with owner.transaction() as session:
                report["digest_bytes_per_listener_event"] = round(
                    (await session.execute(text(f"SELECT {size}('event_digests'::regclass)"))).scalar_one()
                    / args.events,
                    1,
                )
            # re-sending a batch of that day stores nothing
            async with runtime.tenant_transaction(tenant.id) as session:
                again = await events.ingest(
                    session, tenant, "listener", enumerate(listener[:BATCH]), db=runtime, retention_days=730,
                    enforce_limits=False,
                )  # fmt: skip
            report["resent_batch"] = again.as_dict() | {"rejected": len(again.rejected)}
        return report
    finally:
        await runtime.dispose()
        await owner.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--days-ago", type=int, default=10)
    args = parser.parse_args()
    from tests.support.citus import CitusCluster

    from castmetrics.config import Settings
    from castmetrics.db import migrate

    with tempfile.TemporaryDirectory() as root:
        server = CitusCluster(Path(root) / "citus")
        server.start()
        try:
            owner_url = server.create_database("bench")
            runtime_url = migrate.migrate(Settings(database_url=owner_url, app_role=APP_ROLE), owner_url)
            on_cluster = asyncio.run(_measure(owner_url, runtime_url, args, cluster=True))
        finally:
            server.stop()
        with fresh_database(Path(root)) as owner_url:
            runtime_url = migrate.migrate(Settings(database_url=owner_url, app_role=APP_ROLE), owner_url)
            single = asyncio.run(_measure(owner_url, runtime_url, args, cluster=False))
    report = {
        "benchmark": "bytes per stored event, columnar day partitions on Citus (3 nodes) beside one server",
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "rows": {"listener_events": args.events, "download_requests": args.requests},
        "citus": on_cluster,
        "single_server": single,
        "targets": {
            "listener_event_columnar_at_most_40_bytes": on_cluster["columnar_bytes_per_row"]["listener_event"] <= 40,
            "resent_batch_stores_nothing": on_cluster["resent_batch"]["accepted"] == 0,
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
