"""Playback never waits on the database: the database stops mid-traffic and every request is counted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db import migrate as migrations
from castmetrics.db import urls
from castmetrics.db.embedded import EmbeddedPostgres
from castmetrics.db.session import Database
from castmetrics.measurement.enrich import to_json
from castmetrics.measurement.prefix import Buffer, RawRequest
from castmetrics.measurement.recorder import Recorder
from tests.factories.measurement import APPLE


def _seed(owner_url: str, slug: str) -> uuid.UUID:
    tenant, podcast = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id, name, slug) VALUES (%s, 'Outage FM', %s)", (tenant, slug))
        conn.execute("INSERT INTO podcasts (tenant_id, id, name) VALUES (%s, %s, 'Show')", (tenant, podcast))
        conn.execute(
            "INSERT INTO episodes (tenant_id, id, podcast_id, guid, title, audio_url) "
            "VALUES (%s, gen_random_uuid(), %s, 'g1', 'E1', 'https://media.example.com/e1.mp3')",
            (tenant, podcast),
        )
    return tenant


def _requests(slug: str, start: int, count: int) -> list[RawRequest]:
    now = datetime.now(UTC).timestamp()
    return [
        RawRequest(
            at=now,
            slug=slug,
            url="media.example.com/e1.mp3",
            address=f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
            user_agent=APPLE,
            referer="",
            range="",
            method="GET",
        )  # fmt: skip
        for n in range(start, start + count)
    ]


async def test_database_down_mid_traffic(settings: Settings, tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", database="outage")
    owner_url = server.start()
    db: Database | None = None
    try:
        local = settings.model_copy(update={"database_url": owner_url, "app_database_url": None, "data_dir": tmp_path})
        runtime_url = migrations.migrate(local, owner_url)
        tenant = _seed(owner_url, "outage-fm")
        db = Database(runtime_url, pool_size=2, max_overflow=0)
        buffer = Buffer()
        recorder = Recorder(db, local, buffer)
        spool = tmp_path / "spool"

        for item in _requests("outage-fm", 0, 500):
            buffer.append(item)
        assert await recorder.flush() == 500

        server.stop()  # the database goes away mid-traffic
        for start in (500, 1500):
            for item in _requests("outage-fm", start, 1000):
                buffer.append(item)
            assert await recorder.flush() == 0  # nothing reaches the database ...
        assert sum(len(p.read_bytes().splitlines()) for p in spool.glob("*.ndjson")) == 2000  # ... all is spooled

        server.start()
        for item in _requests("outage-fm", 2500, 100):
            buffer.append(item)
        assert await recorder.flush() == 2100  # the spool first, in order, then the new ones
        assert list(spool.glob("*.ndjson")) == []
        assert await recorder.flush() == 0

        async with db.tenant_transaction(tenant) as session:
            stored = (await session.execute(text("SELECT count(*), count(DISTINCT id) FROM download_requests"))).one()
        assert tuple(stored) == (2600, 2600)  # every request, exactly once
    finally:
        if db is not None:
            await db.dispose()
        server.stop()


async def test_a_replay_interrupted_half_way_stores_each_record_once(
    settings: Settings, db: Database, tmp_path: Path, show
) -> None:  # type: ignore[no-untyped-def]
    from tests.factories.measurement import request

    recorder = Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())
    records = [recorder.enricher.enrich(request(show, address=f"192.0.2.{n}")) for n in range(1, 41)]
    # a previous process stored the first half, then died before removing its spool file
    await recorder.write(records[:20])
    recorder.spool.append([to_json(record) for record in records])
    recorder.spool.rotate()
    assert await recorder.flush() == 40
    async with db.tenant_transaction(show.team.tenant_id) as session:
        assert (await session.execute(text("SELECT count(*) FROM download_requests"))).scalar_one() == 40
