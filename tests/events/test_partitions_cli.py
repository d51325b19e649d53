"""``castmetrics partitions maintain [--json]``: the partition job once, in the foreground."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.events.partitions import AHEAD_DAYS, partition_name


def _maintain(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "CASTMETRICS_APP_ROLE": settings.app_role,
        "CASTMETRICS_SECRET_KEY": settings.secret_key.get_secret_value(),
        "CASTMETRICS_LOG_LEVEL": "WARNING",
        "CASTMETRICS_EVENT_RETENTION_DAYS": str(settings.event_retention_days),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "castmetrics", "partitions", "maintain", *args],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )  # fmt: skip


async def test_maintain_makes_partitions_ahead_drops_expired_and_reports(
    settings: Settings, owner_db: Database
) -> None:
    today = datetime.now(UTC).date()
    expired = today - timedelta(days=settings.event_retention_days + 3)
    async with owner_db.transaction() as session:
        await session.execute(text("SELECT castmetrics_event_partitions_ensure(:d, :d)"), {"d": expired})
    run = _maintain(settings, "--json")
    assert run.returncode == 0, run.stderr
    done = json.loads(run.stdout)
    assert set(done) == {"created", "dropped", "columnar", "seconds"}
    async with owner_db.transaction() as session:
        on_citus = (await session.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'citus'"))).scalar()
    # a single server keeps every day in heap partitions; a cluster reports the days it converted
    assert done["columnar"] is None if not on_citus else isinstance(done["columnar"], list)
    assert partition_name("listener", expired) in done["dropped"]
    async with owner_db.transaction() as session:
        ahead = await session.execute(
            text("SELECT to_regclass(:name) IS NOT NULL"),
            {"name": f"castmetrics_events.{partition_name('download', today + timedelta(days=AHEAD_DAYS))}"},
        )
        assert ahead.scalar_one()
    # run again: nothing left to do, said in words
    worded = _maintain(settings)
    assert worded.returncode == 0, worded.stderr
    assert "0 partition(s) created" in worded.stdout
    assert "0 partition(s) dropped" in worded.stdout
    assert ("Columnar storage: not on this server" in worded.stdout) == (not on_citus)


def test_a_columnar_delay_under_two_days_is_refused(settings: Settings) -> None:
    run = _maintain(settings, "--json", CASTMETRICS_COLUMNAR_AFTER_DAYS="1")
    assert run.returncode != 0
    assert "columnar_after_days" in (run.stderr + run.stdout).lower()
