"""Benchmark: what an authenticated request costs beside the query it runs (issue 21).

Against a fresh PostgreSQL (embedded, or a scratch database on ``DATABASE_URL``'s server), migrated by
castmetrics: one tenant (a podcast with 50 episodes and 20,000 listener events over the last three days,
rolled up), served by ``castmetrics serve`` (no job worker, the analytics answer cache off). One client,
keep-alive, sequential, the routes taken in turns: after 50 warm-up rounds, ``--requests`` (400) timed requests
each of

- ``GET /readyz`` (one query as the runtime role: the reference),
- ``GET /v1/me``, ``GET /v1/podcasts/{id}`` with a bearer token and with an API key, ``GET /v1/podcasts?limit=1``,
- a 30-day podcast time series of plays (``/v1/analytics/podcasts/{id}/timeseries``).

Then the throughput of ``GET /v1/podcasts/{id}`` and of ``GET /readyz`` with 32 concurrent clients on
``serve --workers 2`` for ``--seconds`` each.

Targets (ratios of p50s in the same run, same server): the podcast read with a bearer token and with an
API key ≤ 2.5 × ``/readyz``; the time series ≤ 3.5 × ``/readyz``. Run ``python -m bench.api`` from the
repository root; prints a table and writes ``bench/results/api.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import ingest
from bench.ingest import PASSWORD, _server_env, scratch_tenant

RESULTS = Path(__file__).resolve().parent / "results" / "api.json"
TARGETS = {"podcast_bearer": 2.5, "podcast_api_key": 2.5, "timeseries_30d": 3.5}
WARM_UP = 50
CONCURRENCY = 32
SERVER_ENV = {"CASTMETRICS_ANALYTICS_CACHE_SECONDS": "0"}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _latencies(client: httpx.Client, routes: dict[str, tuple[str, dict[str, str]]], count: int) -> dict[str, Any]:
    """``count`` timed requests of each route, taken in turns (one of each, again and again), so that a
    slower moment of the machine weighs on every route alike and the ratios stay comparable."""
    timings: dict[str, list[float]] = {name: [] for name in routes}
    for round_ in range(WARM_UP + count):
        for name, (path, headers) in routes.items():
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
            if round_ >= WARM_UP:
                timings[name].append(elapsed)
    return {
        name: {
            "n": count,
            "p50_ms": round(statistics.median(values), 3),
            "p95_ms": round(_percentile(values, 0.95), 3),
            "p99_ms": round(_percentile(values, 0.99), 3),
        }
        for name, values in timings.items()
    }


async def _throughput(base: str, path: str, headers: dict[str, str], seconds: float) -> dict[str, float]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        done = [0]

        async def one(deadline: float) -> None:
            while time.perf_counter() < deadline:
                response = await client.get(path, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path} answered {response.status_code}")
                done[0] += 1

        await asyncio.gather(*(one(time.perf_counter() + 1.0) for _ in range(CONCURRENCY)))  # warm-up
        done[0] = 0
        started = time.perf_counter()
        await asyncio.gather(*(one(started + seconds) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return {"requests": done[0], "seconds": round(elapsed, 2), "per_s": round(done[0] / elapsed, 1)}


def _credentials(base: str, setup: dict[str, Any]) -> tuple[str, str]:
    login = httpx.post(f"{base}/v1/auth/login", json={"email": setup["email"], "password": PASSWORD})
    login.raise_for_status()
    token = login.json()["access_token"]
    keys = {}
    for scope in ("read", "ingest"):
        made = httpx.post(
            f"{base}/v1/api-keys", json={"name": f"bench {scope}", "scopes": [scope]},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        made.raise_for_status()
        keys[scope] = made.json()["key"]
    setup["ingest_key"] = keys["ingest"]
    return token, keys["read"]


def _events(base: str, setup: dict[str, Any], owner_url: str) -> int:
    """20,000 listener events over HTTP, then one foreground refresh cycle for the tenant (so the time
    series reads rollups)."""
    events = ingest.generate(20_000, setup["episode_ids"], seed=3)
    headers = {"Authorization": f"Bearer {setup['ingest_key']}", "Content-Type": "application/json"}
    for i in range(0, len(events), 5_000):
        httpx.post(f"{base}/v1/events/listener", content=orjson.dumps(events[i : i + 5_000]), headers=headers,
                   timeout=60).raise_for_status()  # fmt: skip
    refreshed = subprocess.run(
        [sys.executable, "-m", "castmetrics", "rollups", "refresh", "--tenant", setup["slug"], "--json"],
        env=_server_env(owner_url), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(json.loads(refreshed.stdout.strip().splitlines()[-1])["events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=400, help="timed requests per route")
    parser.add_argument("--seconds", type=float, default=10.0, help="each throughput phase's duration")
    args = parser.parse_args()

    with scratch_tenant() as (root, owner_url, _runtime_url, setup):
        to = datetime.now(UTC).date()
        first = to - timedelta(days=29)
        with ingest.serve(owner_url, root / "serve.log", SERVER_ENV) as (base, _server):
            token, read_key = _credentials(base, setup)
            rolled_up = _events(base, setup, owner_url)
            podcasts = httpx.get(f"{base}/v1/podcasts", headers={"Authorization": f"Bearer {token}"}).json()
            podcast = podcasts["items"][0]["id"]
            bearer = {"Authorization": f"Bearer {token}"}
            routes = {
                "readyz": ("/readyz", {}),
                "me": ("/v1/me", bearer),
                "podcast_bearer": (f"/v1/podcasts/{podcast}", bearer),
                "podcast_api_key": (f"/v1/podcasts/{podcast}", {"Authorization": f"Bearer {read_key}"}),
                "podcasts_limit_1": ("/v1/podcasts?limit=1", bearer),
                "timeseries_30d": (
                    f"/v1/analytics/podcasts/{podcast}/timeseries?metric=plays&from={first}&to={to}",
                    bearer,
                ),
            }
            with httpx.Client(base_url=base, timeout=30) as client:
                latencies = _latencies(client, routes, args.requests)
        with ingest.serve(owner_url, root / "serve2.log", SERVER_ENV, workers=2) as (base, _server):
            token, _ = _credentials(base, setup)
            throughput = {
                "readyz": asyncio.run(_throughput(base, "/readyz", {}, args.seconds)),
                "podcast_bearer": asyncio.run(
                    _throughput(base, f"/v1/podcasts/{podcast}", {"Authorization": f"Bearer {token}"}, args.seconds)
                ),
            }
    reference = latencies["readyz"]["p50_ms"]
    ratios = {name: round(latencies[name]["p50_ms"] / reference, 2) for name in latencies}
    verdicts = {name: ratios[name] <= limit for name, limit in TARGETS.items()}
    result = {
        "benchmark": "api",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
        "events_rolled_up": rolled_up,
        "latency": latencies,
        "ratio_to_readyz_p50": ratios,
        "targets": {name: f"<= {limit} x readyz p50" for name, limit in TARGETS.items()},
        "pass": verdicts,
        "throughput_32_clients_2_workers": throughput,
    }
    print(f"{'route':18} {'p50 ms':>8} {'p95 ms':>8} {'x readyz':>9}")
    for name, numbers in latencies.items():
        verdict = ("PASS" if verdicts[name] else "FAIL") if name in verdicts else ""
        print(f"{name:18} {numbers['p50_ms']:8.2f} {numbers['p95_ms']:8.2f} {ratios[name]:9.2f} {verdict}")
    for name, numbers in throughput.items():
        print(f"throughput {name:18} {numbers['per_s']:9.1f} requests/s ({CONCURRENCY} clients, 2 workers)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
