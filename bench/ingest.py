"""Benchmark: event ingestion over HTTP and by bulk import, against a raw binary COPY.

Measured in one run against a fresh PostgreSQL (a throw-away embedded server, or a scratch database
on the server ``DATABASE_URL`` names), migrated by castmetrics, with listener events from one
generator (fresh ids each phase, ``occurred_at`` spread over the last three days):

a. reference: a raw binary COPY (psycopg, as the owner) of pre-built rows into the partitioned
   ``listener_events`` (through the parent), 5,000 rows a batch, one transaction each; run just
   before (b) and again just before (c), each ratio taken against the run before it (the machine is
   shared: this keeps both sides of a ratio under the same load); ratios against the faster of the
   two runs are reported too;
b. HTTP: ``castmetrics serve`` (one process, no job worker) taking batches of 5,000 events as JSON
   from a few concurrent clients for about 20 s: sustained events/s, its ratio to (a), the server's
   peak RSS; meanwhile a process of its own runs rollup refresh cycles as the periodic job does (every
   5 s, ``rollups.service.refresh_cycle``), unless ``--no-refresh``: what it rolled up is reported;
c. bulk import: ``castmetrics events import`` of an NDJSON file with its default options (for a file
   this size: one worker process per CPU, up to four): events/s as the command reports it (reading,
   validating and writing; the process start and its migration check are reported apart).

Targets: (b) at least 50,000 events/s, at least 40% of (a), peak RSS under 400 MB; (c) at least 60%
of (a). Run ``python -m bench.ingest`` from the repository root; prints a table and writes
``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_dumps

BATCH = 5_000
EPISODES = 50
APP_ROLE = "castmetrics_bench_app"
PASSWORD = "correct horse battery staple 42"
EVENT_TYPES = ("download", "play", "pause", "resume", "seek", "skip", "progress", "complete")
COLUMNS = ("tenant_id", "id", "episode_id", "listener_id", "event_type", "event_data", "occurred_at")
TYPES = ("uuid", "uuid", "uuid", "text", "text", "jsonb", "timestamptz")
RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
TARGETS = {"http_events_per_s": 50_000, "http_ratio": 0.40, "http_peak_rss_mb": 400, "import_ratio": 0.60}


def generate(count: int, episode_ids: list[str], seed: int) -> list[dict[str, Any]]:
    """Listener events as a client sends them: fresh ids, over the last three days, a quarter with
    ``event_data`` (progress and complete events carry ``listened_seconds``)."""
    rnd = random.Random(seed)
    newest = datetime.now(UTC) - timedelta(minutes=2)
    span = 3 * 86_400 - 600
    events = []
    for _ in range(count):
        event_type = EVENT_TYPES[rnd.randrange(len(EVENT_TYPES))]
        event: dict[str, Any] = {
            "id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "episode_id": episode_ids[rnd.randrange(len(episode_ids))],
            "listener_id": f"listener-{rnd.randrange(200_000):06d}",
            "event_type": event_type,
            "occurred_at": (newest - timedelta(seconds=rnd.random() * span)).isoformat(),
        }
        if event_type in ("progress", "complete"):
            event["event_data"] = {"listened_seconds": rnd.randrange(1, 3600), "app": "bench-player"}
        events.append(event)
    return events


def as_rows(tenant_id: uuid.UUID, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            tenant_id,
            uuid.UUID(e["id"]),
            uuid.UUID(e["episode_id"]),
            e["listener_id"],
            e["event_type"],
            e.get("event_data"),
            datetime.fromisoformat(e["occurred_at"]),
        )
        for e in events
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the database ----------------------------------------------------------------------------------


@contextmanager
def fresh_database(root: Path) -> Iterator[str]:
    """The owner's URL of an empty database: on ``DATABASE_URL``'s server (dropped afterwards) or on
    an embedded server in ``root``."""
    from castmetrics.db import urls

    external = os.environ.get("DATABASE_URL")
    if external:
        name = f"castmetrics_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(urls.libpq_url(external), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urls.with_database(external, name)
        finally:
            with psycopg.connect(urls.libpq_url(external), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return
    from castmetrics.db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(root / "pg", database="bench")
    try:
        yield server.start()
    finally:
        server.stop()


async def _setup_tenant(owner_url: str, runtime_url: str) -> dict[str, Any]:
    """An enterprise tenant without an events quota or ingest rate, a podcast with 50 episodes and a
    verified owner (who creates the ``ingest`` key once the server runs)."""
    from castmetrics.auth.principal import Actor
    from castmetrics.catalog import service as catalog
    from castmetrics.catalog.schemas import EpisodeIn, PodcastIn
    from castmetrics.config import Settings
    from castmetrics.db.session import Database
    from castmetrics.identity import service as identity
    from castmetrics.tenancy.schemas import TenantCreate

    settings = Settings(database_url=owner_url, app_role=APP_ROLE, bcrypt_rounds=4)
    actor = Actor.system("bench")
    tenant_id = uuid.uuid4()
    slug = f"bench-{tenant_id.hex[:8]}"
    email = f"owner@{slug}.example.com"
    db = Database(runtime_url, pool_size=1, max_overflow=0)
    try:
        async with db.tenant_transaction(tenant_id) as session:
            tenant = await identity.provision_tenant(
                session,
                TenantCreate(name="Bench Network", slug=slug, subscription_tier="enterprise"),
                actor,
                tenant_id=tenant_id,
            )
            await identity.create_user(
                session,
                settings,
                tenant_id,
                email=email,
                name="Bench Owner",
                password=PASSWORD,
                role_names=["owner"],
                actor=actor,
                email_verified=True,
            )
            podcast = await catalog.create_podcast(session, tenant, actor, PodcastIn(name="Bench Show"))
            episode_ids = [
                str((await catalog.create_episode(session, actor, podcast, EpisodeIn(title=f"Episode {n}"))).id)
                for n in range(1, EPISODES + 1)
            ]
    finally:
        await db.dispose()
    from castmetrics.db import urls

    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        conn.execute(
            "UPDATE tenants SET metadata = metadata || %s::jsonb WHERE id = %s",
            (json.dumps({"quotas": {"ingest_rate": None, "events_per_month": None}}), tenant_id),
        )
        today = datetime.now(UTC).date()
        conn.execute("SELECT castmetrics_event_partitions_ensure(%s, %s)", (today - timedelta(days=4), today))
    return {"tenant_id": tenant_id, "slug": slug, "email": email, "episode_ids": episode_ids}


@contextmanager
def scratch_tenant() -> Iterator[tuple[Path, str, str, dict[str, Any]]]:
    """A throw-away directory, a fresh database migrated by castmetrics and its bench tenant (``_setup_tenant``):
    (directory, owner URL, runtime URL, tenant), for the block."""
    from castmetrics.config import Settings
    from castmetrics.db import migrate
    from castmetrics.observability import configure_logging

    configure_logging("WARNING", json=True)
    with tempfile.TemporaryDirectory(prefix="castmetrics-bench-") as tmp, fresh_database(Path(tmp)) as owner_url:
        runtime_url = migrate.migrate(Settings(database_url=owner_url, app_role=APP_ROLE), owner_url)
        yield Path(tmp), owner_url, runtime_url, asyncio.run(_setup_tenant(owner_url, runtime_url))


def _empty_events(owner_url: str) -> None:
    """Every phase starts from empty event tables and a checkpoint, so none pays for another's WAL."""
    from castmetrics.db import urls

    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        conn.execute("TRUNCATE listener_events, rollup_invalidations")
        conn.execute("CHECKPOINT")


def _count_events(owner_url: str) -> int:
    from castmetrics.db import urls

    with psycopg.connect(urls.libpq_url(owner_url)) as conn:
        row = conn.execute("SELECT count(*) FROM listener_events").fetchone()
        return int(row[0]) if row else 0


# --- a. the reference ------------------------------------------------------------------------------


def reference_copy(owner_url: str, rows: list[tuple[Any, ...]]) -> float:
    """Rows per second of a plain binary COPY into the partitioned parent, 5,000 rows a transaction."""
    from castmetrics.db import urls

    statement = sql.SQL("COPY listener_events ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )
    with psycopg.connect(urls.libpq_url(owner_url)) as conn:
        set_json_dumps(orjson.dumps, context=conn)
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                copy.set_types(list(TYPES))
                for row in rows[start : start + BATCH]:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


# --- b. HTTP ---------------------------------------------------------------------------------------


def _refresh_loop(runtime_url: str, stop: Any, done: Any, every: float) -> None:
    """Refresh cycles every ``every`` seconds until ``stop`` is set (in a process of its own); adds the
    cycles run and the events they rolled up to ``done`` (cycles, events, seconds)."""
    from castmetrics.config import Settings
    from castmetrics.db.session import Database
    from castmetrics.rollups import service as rollups

    async def loop() -> None:
        db = Database(runtime_url, pool_size=1, max_overflow=0, application_name="bench-refresh")
        cycle_events = Settings().rollup_cycle_events
        try:
            while not stop.is_set():
                cycle = await rollups.refresh_cycle(db, cycle_events=cycle_events)
                done[0] += 1
                done[1] += cycle.events
                done[2] += cycle.seconds
                await asyncio.sleep(max(0.0, every - cycle.seconds))
        finally:
            await db.dispose()

    asyncio.run(loop())


@contextmanager
def refreshing(runtime_url: str, enabled: bool, every: float = 5.0) -> Iterator[dict[str, Any]]:
    """Rollup refresh cycles in another process while the block runs (as ``serve``'s job worker would);
    the answer is filled in when it ends: cycles, events rolled up, seconds spent in cycles."""
    import multiprocessing

    report: dict[str, Any] = {"enabled": enabled}
    if not enabled:
        yield report
        return
    stop = multiprocessing.Event()
    done = multiprocessing.Array("d", 3)
    process = multiprocessing.Process(target=_refresh_loop, args=(runtime_url, stop, done, every), daemon=True)
    process.start()
    try:
        yield report
    finally:
        stop.set()
        process.join(timeout=120)
        report.update(
            {
                "every_s": every,
                "cycles": int(done[0]),
                "events_rolled_up": int(done[1]),
                "cycle_seconds": round(done[2], 2),
            }
        )


def _server_env(owner_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTMETRICS_")}
    env.update(
        {
            "DATABASE_URL": owner_url,
            "CASTMETRICS_APP_ROLE": APP_ROLE,
            "CASTMETRICS_IN_PROCESS_WORKER": "false",
            "CASTMETRICS_LOG_LEVEL": "WARNING",
            "CASTMETRICS_LOG_JSON": "true",
        }
    )
    return env


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _post_batches(
    base: str, key: str, bodies: list[bytes], in_flight: int, seconds: float
) -> tuple[int, int, int, float]:
    """Posts ``bodies`` from ``in_flight`` concurrent clients until they run out or ``seconds`` pass;
    answers events accepted, duplicates, rejected and the seconds taken."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    totals = [0, 0, 0]
    pending = iter(bodies)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300, limits=limits) as client:

        async def post(body: bytes) -> None:
            response = await client.post("/v1/events/listener", content=body)
            if response.status_code != 200:
                raise RuntimeError(f"ingestion answered {response.status_code}: {response.text[:300]}")
            answer = orjson.loads(response.content)
            totals[0] += answer["accepted"]
            totals[1] += answer["duplicates"]
            totals[2] += len(answer["rejected"])

        async def sender(deadline: float) -> None:
            while time.perf_counter() < deadline and (body := next(pending, None)) is not None:
                await post(body)

        await post(next(pending))  # warm-up: the first body alone (connections, partition cache)
        totals[:] = [0, 0, 0]
        started = time.perf_counter()
        await asyncio.gather(*(sender(started + seconds) for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    return totals[0], totals[1], totals[2], elapsed


@contextmanager
def serve(
    owner_url: str, log: Path, env: dict[str, str] | None = None, ready_within: float = 180, workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``castmetrics serve`` (``workers`` processes, no job worker) on a free port until the block ends;
    answers its base URL and process. ``env`` adds settings to the server's environment."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "castmetrics", "serve", "--port", str(port), "--workers", str(workers)],
            env={**_server_env(owner_url), **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + ready_within
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"castmetrics serve did not become ready (see {log})")
            time.sleep(0.05)
        yield base, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def http_ingestion(
    owner_url: str, setup: dict[str, Any], bodies: list[bytes], in_flight: int, seconds: float, log: Path
) -> dict[str, Any]:
    with serve(owner_url, log) as (base, server):
        login = httpx.post(f"{base}/v1/auth/login", json={"email": setup["email"], "password": PASSWORD})
        login.raise_for_status()
        token = login.json()["access_token"]
        made = httpx.post(
            f"{base}/v1/api-keys",
            json={"name": "bench", "scopes": ["ingest"]},
            headers={"Authorization": f"Bearer {token}"},
        )
        made.raise_for_status()
        rss_ready = _peak_rss_mb(server.pid)
        accepted, duplicates, rejected, elapsed = asyncio.run(
            _post_batches(base, made.json()["key"], bodies, in_flight, seconds)
        )
        peak = _peak_rss_mb(server.pid)
    if duplicates or rejected:
        raise RuntimeError(f"HTTP phase: {duplicates} duplicates and {rejected} rejected, expected none")
    return {
        "events": accepted,
        "seconds": elapsed,
        "events_per_s": accepted / elapsed,
        "in_flight": in_flight,
        "batch": BATCH,
        "server_rss_ready_mb": round(rss_ready, 1),
        "server_peak_rss_mb": round(peak, 1),
    }


# --- c. bulk import --------------------------------------------------------------------------------


def bulk_import(owner_url: str, setup: dict[str, Any], path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "castmetrics", "events", "import", str(path), "--tenant", setup["slug"]],
        env=_server_env(owner_url),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"events import exited {done.returncode}: {done.stdout[-500:]} {done.stderr[-2000:]}")
    summary = done.stdout.strip().splitlines()[-1]
    found = re.search(r"([\d,]+) accepted.* in ([\d.]+) s \(([\d,]+) events/s(?:, (\d+) processes)?\)", summary)
    if found is None:
        raise RuntimeError(f"cannot read the import's summary: {summary!r}")
    accepted = int(found.group(1).replace(",", ""))
    return {
        "events": accepted,
        "seconds": float(found.group(2)),
        "events_per_s": float(found.group(3).replace(",", "")),
        "processes": int(found.group(4) or 1),
        "process_wall_s": round(wall, 2),
        "events_per_s_including_process_start": accepted / wall,
        "summary": summary,
    }


# --- the run ---------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="rows for the reference and the import")
    parser.add_argument("--http-events", type=int, default=1_500_000, help="at most this many over HTTP")
    parser.add_argument("--http-seconds", type=float, default=20.0, help="the HTTP phase's duration")
    parser.add_argument("--in-flight", type=int, default=3, help="concurrent HTTP requests")
    parser.add_argument(
        "--no-refresh", dest="refresh", action="store_false", help="no rollup refresh cycles during (b)"
    )
    args = parser.parse_args()

    with scratch_tenant() as (root, owner_url, runtime_url, setup):
        with psycopg.connect(owner_url) as conn:
            server_version = conn.execute("SHOW server_version").fetchone()

        print(f"generating {args.events:,} + {args.http_events:,} + {args.events:,} events …", file=sys.stderr)
        rows = as_rows(setup["tenant_id"], generate(args.events, setup["episode_ids"], seed=1))
        http_events = generate(args.http_events, setup["episode_ids"], seed=2)
        bodies = [orjson.dumps(http_events[i : i + BATCH]) for i in range(0, len(http_events), BATCH)]
        del http_events
        ndjson = root / "events.ndjson"
        with ndjson.open("wb") as out:
            for event in generate(args.events, setup["episode_ids"], seed=3):
                out.write(orjson.dumps(event) + b"\n")
        gc.collect()
        gc.freeze()  # this process only sends from here on: its collector stays out of the way

        def reference_run(label: str) -> float:
            print(f"a. reference COPY ({label}) …", file=sys.stderr)
            _empty_events(owner_url)
            rate = reference_copy(owner_url, rows)
            assert _count_events(owner_url) == len(rows)
            return rate

        load: dict[str, list[float]] = {}
        reference_http = reference_run("before b")
        _empty_events(owner_url)
        print(f"b. HTTP ingestion for {args.http_seconds:.0f} s …", file=sys.stderr)
        load["http"] = [round(n, 2) for n in os.getloadavg()]
        with refreshing(runtime_url, args.refresh) as refreshed:
            http = http_ingestion(owner_url, setup, bodies, args.in_flight, args.http_seconds, root / "serve.log")
        http["refresh"] = refreshed
        load["http"].append(round(os.getloadavg()[0], 2))
        assert _count_events(owner_url) == http["events"] + BATCH  # and the warm-up batch
        reference_import = reference_run("before c")
        _empty_events(owner_url)
        print("c. events import …", file=sys.stderr)
        load["import"] = [round(n, 2) for n in os.getloadavg()]
        imported = bulk_import(owner_url, setup, ndjson)
        load["import"].append(round(os.getloadavg()[0], 2))
        assert imported["events"] == args.events == _count_events(owner_url), imported

    # Each figure against the reference run just before it (the same load on the machine); the
    # ratios against the faster of the two reference runs are recorded too.
    best = max(reference_http, reference_import)
    http_ratio = http["events_per_s"] / reference_http
    import_ratio = imported["events_per_s"] / reference_import
    with_start = imported["events_per_s_including_process_start"]
    checks = {
        "http_events_per_s": http["events_per_s"] >= TARGETS["http_events_per_s"],
        "http_ratio": http_ratio >= TARGETS["http_ratio"],
        "http_peak_rss_mb": http["server_peak_rss_mb"] < TARGETS["http_peak_rss_mb"],
        "import_ratio": import_ratio >= TARGETS["import_ratio"],
    }
    import_label = f"c. events import (NDJSON, {imported['processes']} process{'es' * (imported['processes'] > 1)})"
    lines = [
        f"{'measurement':<44} {'events/s':>10} {'vs (a)':>7} {'vs best':>8}  target",
        f"{'a. raw binary COPY (reference), before b':<44} {reference_http:>10,.0f} {'1.00':>7} "
        f"{reference_http / best:>8.2f}",
        f"{'b. HTTP, ' + str(args.in_flight) + ' in flight x 5,000 events':<44} {http['events_per_s']:>10,.0f} "
        f"{http_ratio:>7.2f} {http['events_per_s'] / best:>8.2f}  "
        f">= 50,000/s: {_verdict(checks['http_events_per_s'])}; >= 0.40: {_verdict(checks['http_ratio'])}",
        f"{'   server peak RSS':<44} {http['server_peak_rss_mb']:>9.0f}M {'':>7} {'':>8}  "
        f"< 400 MB: {_verdict(checks['http_peak_rss_mb'])}",
        f"   rollup refresh meanwhile (every 5 s, another process): {http['refresh'].get('cycles', 0)} cycles, "
        f"{http['refresh'].get('events_rolled_up', 0):,} events rolled up"
        if http["refresh"]["enabled"]
        else "   no rollup refresh meanwhile (--no-refresh)",
        f"{'a. raw binary COPY (reference), before c':<44} {reference_import:>10,.0f} {'1.00':>7} "
        f"{reference_import / best:>8.2f}",
        f"{import_label:<44} {imported['events_per_s']:>10,.0f} {import_ratio:>7.2f} "
        f"{imported['events_per_s'] / best:>8.2f}  >= 0.60: {_verdict(checks['import_ratio'])}",
        f"{'   the same, with process start':<44} {with_start:>10,.0f} {with_start / reference_import:>7.2f} "
        f"{with_start / best:>8.2f}",
        f"load average (1, 5, 15 min; 1 min after): b {load['http']}, c {load['import']}",
    ]
    print("\n".join(lines))
    result = {
        "benchmark": "event_ingestion",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgres": server_version[0] if server_version else None,
            "load_average": load,
        },
        "reference_copy": {
            "events": args.events,
            "batch": BATCH,
            "events_per_s_before_http": round(reference_http),
            "events_per_s_before_import": round(reference_import),
        },
        "http": {
            **http,
            "events_per_s": round(http["events_per_s"]),
            "ratio_to_reference": round(http_ratio, 3),
            "ratio_to_best_reference": round(http["events_per_s"] / best, 3),
        },
        "bulk_import": {
            **imported,
            "events_per_s": round(imported["events_per_s"]),
            "events_per_s_including_process_start": round(with_start),
            "ratio_to_reference": round(import_ratio, 3),
            "ratio_to_best_reference": round(imported["events_per_s"] / best, 3),
        },
        "targets": TARGETS,
        "target_met": checks,
        "all_targets_met": all(checks.values()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
