"""``castmetrics serve`` end to end: external PostgreSQL and the embedded default, restarts included."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psycopg

from castmetrics.config import Settings
from castmetrics.db import urls
from tests.support.http import wait_for
from tests.support.serve import base_env, serving


def test_serve_on_external_database_uses_the_runtime_role(settings: Settings, owner_url: str, runtime_url: str) -> None:
    env = base_env(DATABASE_URL=owner_url, CASTMETRICS_APP_ROLE=settings.app_role)
    with serving([], env) as (process, base):
        wait_for(f"{base}/readyz", timeout=60)
        assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}
        with psycopg.connect(urls.libpq_url(owner_url)) as conn:
            sessions = conn.execute(
                """
                SELECT DISTINCT a.usename, r.rolsuper, r.rolbypassrls
                FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename
                WHERE a.datname = current_database() AND a.backend_type = 'client backend'
                  AND a.application_name = 'castmetrics-api'
                """
            ).fetchall()
            unforced = conn.execute(
                """
                SELECT c.relname FROM pg_class c
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                  AND NOT (c.relrowsecurity AND c.relforcerowsecurity
                           AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
                """
            ).fetchall()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert sessions == [(settings.app_role, False, False)]
    assert unforced == []


def _postmaster_running(data_dir: Path) -> bool:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_embedded_default_starts_reuses_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "castmetrics-data"
    env = base_env(CASTMETRICS_DEMO_EVENTS="0")  # the catalog only: generated listening is tested in tests/demo
    with serving(["--data-dir", str(data_dir), "--demo"], env) as (process, base):
        first_start = wait_for(f"{base}/readyz", timeout=120)
        lines = (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = process.stdout.read() if process.stdout else ""
    # a Unix socket only: the listen-address line of postmaster.pid is empty, so no TCP port is taken
    assert lines[5].strip() == ""
    assert "Demo tenant 'demo'" in output and base in output
    assert not _postmaster_running(data_dir), "the embedded server must stop with serve"

    with serving(["--data-dir", str(data_dir)], env) as (process, base):
        started = time.monotonic()
        second_start = wait_for(f"{base}/readyz", timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert second_start < 10, f"restart on an existing data dir took {second_start:.1f} s (first {first_start:.1f} s)"
    assert time.monotonic() - started < 40
    assert not _postmaster_running(data_dir)
