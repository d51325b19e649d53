"""Benchmark: workflow executions through the queue (issue 10: at least 200 executions/s).

A fresh PostgreSQL (as in ``bench/ingest.py``), one enterprise tenant, and a two-step workflow: a
``condition`` on the payload, then a ``webhook`` to a local receiver (``bench/webhook_receiver.py``,
served by uvicorn in its own process) that answers 200. ``--executions`` pending executions are
written at once; then ``castmetrics worker --concurrency C`` starts and works them through the queue:
the dispatcher job claims due executions every second and defers ``workflows.run`` jobs (up to ten
executions of a tenant each), and the workers' job slots run them, step by step, in tenant
transactions. ``--workers`` (default 2, one per core of the target machine) ``castmetrics worker``
processes share the queue; the worker is Python-bound, so it scales out by processes.

Measured from the database's own timestamps: executions / (last finished_at − first started_at), so
the worker's start-up is left out; and each execution's run time (finished_at − started_at) p50/p95.
Target: at least 200 executions/s. Run ``python -m bench.workflows``; writes
``bench/results/workflows.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.analytics import code_fingerprint
from bench.ingest import APP_ROLE, _server_env, _verdict, fresh_database

RESULTS = Path(__file__).resolve().parent / "results" / "workflows.json"


def _log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _tenant(runtime_url: str) -> uuid.UUID:
    from castmetrics.auth.principal import Actor
    from castmetrics.db.session import Database
    from castmetrics.identity import service as identity
    from castmetrics.tenancy.schemas import TenantCreate

    tenant_id = uuid.uuid4()
    db = Database(runtime_url, pool_size=1, max_overflow=0)
    try:
        async with db.tenant_transaction(tenant_id) as session:
            await identity.provision_tenant(
                session,
                TenantCreate(name="Bench", slug=f"bench-{tenant_id.hex[:8]}", subscription_tier="enterprise"),
                Actor.system("bench"),
                tenant_id=tenant_id,
            )
    finally:
        await db.dispose()
    return tenant_id


def _executions(owner_url: str, tenant_id: uuid.UUID, hook: str, count: int) -> None:
    from castmetrics.db import urls

    steps = [{"type": "condition", "field": "n", "operator": "exists"}, {"type": "webhook", "url": hook}]
    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        workflow_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO workflows (tenant_id, id, name, trigger_event, steps, secret) "
            "VALUES (%s, %s, 'bench', 'campaign.created', %s, 'bench-secret')",
            (tenant_id, workflow_id, json.dumps(steps)),
        )
        conn.execute(
            """
            INSERT INTO workflow_executions (tenant_id, id, workflow_id, trigger_event, payload, steps)
            SELECT %s, gen_random_uuid(), %s, 'manual', jsonb_build_object('n', n), %s
            FROM generate_series(1, %s) n
            """,
            (tenant_id, workflow_id, json.dumps(steps), count),
        )
        conn.execute("ANALYZE workflow_executions")


def _progress(owner_url: str, tenant_id: uuid.UUID) -> dict[str, Any]:
    from castmetrics.db import urls

    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        row = conn.execute(
            """
            SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'),
                   count(*), min(started_at), max(finished_at),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
            FROM workflow_executions WHERE tenant_id = %s
            """,
            (tenant_id,),
        ).fetchone()
    assert row is not None
    keys = ("succeeded", "failed", "total", "first_started", "last_finished", "run_p50_s", "run_p95_s")
    return dict(zip(keys, row, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16, help="each worker's job slots")
    parser.add_argument("--workers", type=int, default=2, help="castmetrics worker processes")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    from castmetrics.config import Settings
    from castmetrics.db import migrate

    with (
        tempfile.TemporaryDirectory(prefix="castmetrics-bench-workflows-") as tmp,
        fresh_database(Path(tmp)) as owner_url,
    ):
        runtime_url = migrate.migrate(Settings(database_url=owner_url, app_role=APP_ROLE), owner_url)
        tenant_id = asyncio.run(_tenant(runtime_url))
        port = _free_port()
        receiver = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.webhook_receiver:app", "--port", str(port), "--log-level",
             "warning", "--no-access-log"],
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        workers: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(100):
                try:
                    httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            _executions(owner_url, tenant_id, f"http://127.0.0.1:{port}/hook", args.executions)
            _log(f"{args.executions:,} executions pending; starting the worker")
            env = {**_server_env(owner_url), "CASTMETRICS_ALLOW_PRIVATE_WEBHOOKS": "true"}
            log_path = Path(tmp) / "worker.log"
            with log_path.open("wb") as log_file:
                workers = [
                    subprocess.Popen(
                        [sys.executable, "-m", "castmetrics", "worker", "--concurrency", str(args.concurrency)],
                        env=env,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )  # fmt: skip
                    for _ in range(args.workers)
                ]
            deadline = time.monotonic() + args.timeout
            while True:
                progress = _progress(owner_url, tenant_id)
                done = progress["succeeded"] + progress["failed"]
                if done >= args.executions or time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    break
                _log(f"{done:,} of {args.executions:,} finished")
                time.sleep(2)
            if progress["failed"] or done < args.executions:
                print(log_path.read_text()[-4000:], file=sys.stderr)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
            receiver.terminate()
            receiver.wait(timeout=10)

    span = (progress["last_finished"] - progress["first_started"]).total_seconds() if progress["last_finished"] else 0
    rate = progress["succeeded"] / span if span else 0.0
    checks = {
        ">= 200 executions/s through the queue": rate >= 200,
        "every execution succeeded": progress["succeeded"] == args.executions,
    }
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "code": code_fingerprint(),
        "executions": args.executions,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "succeeded": progress["succeeded"],
        "failed": progress["failed"],
        "span_s": span,
        "executions_per_s": rate,
        "run_p50_s": progress["run_p50_s"],
        "run_p95_s": progress["run_p95_s"],
        "checks": checks,
    }
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(
        f"{progress['succeeded']:,} succeeded, {progress['failed']:,} failed in {span:.1f} s: {rate:.0f} executions/s"
    )
    print(f"per execution (claimed to finished): p50 {progress['run_p50_s']:.3f} s, p95 {progress['run_p95_s']:.3f} s")
    for name, ok in checks.items():
        print(f"  {_verdict(ok)}  {name}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
