"""A batch whose server dies mid-request leaves nothing behind: all of its events or none."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from castmetrics.config import Settings
from castmetrics.db import urls
from castmetrics.db.session import Database
from castmetrics.events import partitions
from tests.factories.events import Catalog, count_events, listener_event
from tests.support.http import wait_for
from tests.support.serve import base_env, serving


def _waiting_copy(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Backends of the API blocked in a COPY (the request caught half-way)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'castmetrics-api' "
        "AND query ILIKE 'COPY%' AND wait_event_type = 'Lock'"
    ).fetchall()
    return [int(row[0]) for row in rows]


async def test_killing_the_server_mid_batch_stores_nothing(
    settings: Settings, owner_url: str, client: httpx.AsyncClient, catalog: Catalog, db: Database
) -> None:
    key = await client.post(
        "/v1/api-keys", json={"name": "sdk", "scopes": ["ingest"]}, headers=catalog.team.auth("owner")
    )
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    await partitions.ensure(db, yesterday.date(), now.date())
    # 5,000 events yesterday (written first), 5,000 today: the second day's partition is locked so
    # the request is caught half-way, with the first day already copied in its transaction.
    batch = [listener_event(catalog.episode_ids[0], occurred_at=yesterday.isoformat()) for _ in range(5000)]
    batch += [listener_event(catalog.episode_ids[1], occurred_at=now.isoformat()) for _ in range(5000)]
    env = base_env(
        DATABASE_URL=owner_url, CASTMETRICS_APP_ROLE=settings.app_role, CASTMETRICS_IN_PROCESS_WORKER="false"
    )
    with serving([], env) as (process, base), psycopg.connect(urls.libpq_url(owner_url)) as locker:
        wait_for(f"{base}/readyz", timeout=60)
        locker.execute(f"LOCK TABLE castmetrics_events.listener_events_p{now:%Y%m%d} IN SHARE MODE")
        outcome: dict[str, object] = {}

        def send() -> None:
            try:
                outcome["response"] = httpx.post(f"{base}/v1/events/listener", json=batch, headers=headers, timeout=60)
            except httpx.HTTPError as exc:
                outcome["error"] = exc

        sender = threading.Thread(target=send)
        sender.start()
        with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not (blocked := _waiting_copy(watcher)):
                assert time.monotonic() < deadline, "the request never reached the second COPY"
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            locker.rollback()  # releases the lock: the orphaned backend finds its client gone
            sender.join(timeout=30)
            deadline = time.monotonic() + 30
            while watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (blocked,)
            ).fetchone() != (0,):
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert "error" in outcome  # the client saw the connection die, not an answer
    assert await count_events(db, catalog.team.tenant_id) == 0
