"""Benchmark: `castmetrics serve` on the embedded default, first start and restart to /readyz.

Target (issue 2): a restart on an existing data directory answers /readyz in under 10 s.
Reference, measured in the same run: the bare PostgreSQL start of the same data directory with the
wheel's own `pg_ctl start -w`, i.e. what no amount of work on our side could beat.
Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_until_ready(data_dir: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("CASTMETRICS_")}
    env["CASTMETRICS_LOG_LEVEL"] = "WARNING"
    port = _free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "castmetrics", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError("serve did not become ready")
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _bare_postgres_start(data_dir: Path) -> float:
    from castmetrics.db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir)
    started = time.monotonic()
    server.start()
    elapsed = time.monotonic() - started
    server.stop()
    return elapsed


def main() -> None:
    from castmetrics.observability import configure_logging

    configure_logging("WARNING", json=True)  # stdout carries only the result
    with tempfile.TemporaryDirectory(prefix="castmetrics-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        first = _serve_until_ready(data_dir)
        restarts = [_serve_until_ready(data_dir) for _ in range(3)]
        bare = [_bare_postgres_start(data_dir) for _ in range(3)]
    restart = sorted(restarts)[1]
    reference = sorted(bare)[1]
    print(
        json.dumps(
            {
                "benchmark": "serve_startup_embedded",
                "first_start_to_readyz_s": round(first, 3),
                "restart_to_readyz_s_median": round(restart, 3),
                "restarts_s": [round(r, 3) for r in restarts],
                "reference_bare_postgres_start_s_median": round(reference, 3),
                "ratio_restart_to_bare_start": round(restart / reference, 2),
                "target_restart_s": 10,
                "target_met": restart < 10,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
