"""Benchmark: the measurement prefix under wrk, against a minimal ASGI app giving the same 302.

Targets (issue 7), measured in one run on the same server software (uvicorn) and worker count (2):
the prefix reaches at least 40% of the reference's rate and at least 6,000 redirects/s, p99 <= 20 ms,
and every request answered is counted afterwards (stored in ``download_requests``).
Needs wrk (Debian package ``wrk``). Run: ``python -m bench.prefix``; writes bench/results/prefix.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from castmetrics.config import Settings
from castmetrics.db import migrate as migrations
from castmetrics.db import urls
from castmetrics.db.embedded import EmbeddedPostgres

AGENT = "AppleCoreMedia/1.0.0.20E252 (iPhone; U; CPU OS 16_4_1 like Mac OS X; en_us)"
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
# Each server gets this much traffic first, unmeasured: a production server has long been warm (its
# caches filled, its start-up garbage frozen out of the collector), a freshly started one has not.
WARM_UP = int(os.environ.get("BENCH_WARM_UP_SECONDS", "3"))
CONNECTIONS = 64
RESULTS = Path(__file__).parent / "results" / "prefix.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


# Each request comes from a random client address (through a trusted proxy's X-Forwarded-For) with
# one of a few podcast apps, so the recorder does the work real traffic asks of it.
AGENTS = [
    AGENT,
    "Spotify/8.8.0 iOS/16.4.1 (iPhone14,5)",
    "Overcast/3.0 (+http://overcast.fm/; iOS podcast app)",
    "PocketCasts/1.0 (Pocket Casts - Android; +https://pocketcasts.com/)",
    "Podcasts/1.0 CFNetwork/1410.0.3 Darwin/22.4.0",
]
LUA = """
math.randomseed(os.time())
local agents = {%s}
request = function()
  wrk.headers["X-Forwarded-For"] = math.random(1, 223) .. "." .. math.random(0, 255) .. "." ..
      math.random(0, 255) .. "." .. math.random(1, 254)
  wrk.headers["User-Agent"] = agents[math.random(#agents)]
  return wrk.format(nil)
end
"""


def _wrk(url: str, seconds: int = DURATION) -> dict[str, Any]:
    script = Path(tempfile.mkdtemp()) / "clients.lua"
    script.write_text(LUA % ", ".join(json.dumps(agent) for agent in AGENTS))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": rate,
        "requests": total,
        "p99_ms": float(p99.group(1)) * scale,
        "bad_responses": int(errors.group(1)) if errors else 0,
    }


def _settled(owner_url: str) -> int:
    """The stored count once the warm-up's last records are written (unchanged for a second)."""
    count = _stored(owner_url)
    while True:
        time.sleep(1.0)
        now = _stored(owner_url)
        if now == count:
            return count
        count = now


def _seed(owner_url: str) -> str:
    tenant, podcast = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id, name, slug) VALUES (%s, 'Bench FM', 'bench-fm')", (tenant,))
        conn.execute("INSERT INTO podcasts (tenant_id, id, name) VALUES (%s, %s, 'Show')", (tenant, podcast))
        conn.execute(
            "INSERT INTO episodes (tenant_id, id, podcast_id, guid, title, audio_url, duration_seconds) "
            "VALUES (%s, gen_random_uuid(), %s, 'g1', 'E1', 'https://media.example.com/show/e1.mp3', 3600)",
            (tenant, podcast),
        )
    return "/p/bench-fm/dts.podtrac.com/redirect.mp3/media.example.com/show/e1.mp3?src=rss"


def _stored(owner_url: str) -> int:
    with psycopg.connect(urls.libpq_url(owner_url)) as conn:
        row = conn.execute("SELECT count(*) FROM download_requests").fetchone()
    return int(row[0]) if row else 0


def _serve(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="castmetrics-bench-prefix-"))
    server = None
    owner_url = os.environ.get("DATABASE_URL")
    if not owner_url:
        server = EmbeddedPostgres(work / "pg", database="bench")
        owner_url = server.start()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CASTMETRICS_")}
    try:
        runtime_url = migrations.migrate(Settings(database_url=owner_url), owner_url)
        path = _seed(owner_url)
        env = {
            **base_env,
            "DATABASE_URL": owner_url,
            "CASTMETRICS_APP_DATABASE_URL": runtime_url,
            "CASTMETRICS_IN_PROCESS_WORKER": "false",
            "CASTMETRICS_LOG_LEVEL": "WARNING",
            "CASTMETRICS_DATA_DIR": str(work / "data"),
            "CASTMETRICS_TRUSTED_PROXIES": "127.0.0.1/32",
        }
        runs: dict[str, list[dict[str, Any]]] = {"reference": [], "prefix": []}
        for _round in range(2):
            port = _free_port()
            reference = _serve(
                [sys.executable, "-c",
                 "import uvicorn; uvicorn.run('bench.minimal_redirect:app', host='127.0.0.1', "
                 f"port={port}, workers=2, log_config=None, proxy_headers=False)"],
                {**base_env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            )  # fmt: skip
            try:
                _wait(f"http://127.0.0.1:{port}{path}", reference)
                _wrk(f"http://127.0.0.1:{port}{path}", WARM_UP)
                runs["reference"].append(_wrk(f"http://127.0.0.1:{port}{path}"))
            finally:
                _stop(reference)
            port = _free_port()
            before = _stored(owner_url)
            prefix = _serve([sys.executable, "-m", "castmetrics", "serve", "--port", str(port), "--workers", "2"], env)
            try:
                _wait(f"http://127.0.0.1:{port}/healthz", prefix)
                _wrk(f"http://127.0.0.1:{port}{path}", WARM_UP)
                before = _settled(owner_url)
                result = _wrk(f"http://127.0.0.1:{port}{path}")
                deadline = time.monotonic() + 60
                while _stored(owner_url) - before < result["requests"] and time.monotonic() < deadline:
                    time.sleep(0.5)
                time.sleep(1.5)  # requests wrk gave up on at the end may still be recorded
                result["stored"] = _stored(owner_url) - before
                runs["prefix"].append(result)
            finally:
                _stop(prefix)
        best_ref = max(runs["reference"], key=lambda r: r["rate"])
        best = max(runs["prefix"], key=lambda r: r["rate"])
        ratio = best["rate"] / best_ref["rate"]
        counted = all(r["requests"] <= r["stored"] <= r["requests"] + CONNECTIONS for r in runs["prefix"])
        checks = {
            "ratio_at_least_40pct": ratio >= 0.40,
            "at_least_6000_per_s": best["rate"] >= 6000,
            "p99_at_most_20ms": best["p99_ms"] <= 20,
            "every_request_counted": counted,
        }
        report = {
            "runs": runs,
            "warm_up_s": WARM_UP,
            "ratio_per_round": [
                round(p["rate"] / r["rate"], 3) for p, r in zip(runs["prefix"], runs["reference"], strict=True)
            ],
            "reference_rate": best_ref["rate"],
            "prefix_rate": best["rate"],
            "ratio": round(ratio, 3),
            "prefix_p99_ms": best["p99_ms"],
            "checks": checks,
            "duration_s": DURATION,
            "connections": CONNECTIONS,
        }
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        for name, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'} {name}")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
