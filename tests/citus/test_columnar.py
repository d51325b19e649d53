"""On a Citus cluster: ``castmetrics partitions maintain`` (``events.partitions.maintain``) converts the day
partitions older than CASTMETRICS_COLUMNAR_AFTER_DAYS to columnar storage; a re-sent batch of such a day
is answered as duplicates and stores nothing, a new late event is stored once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.events import partitions, service
from castmetrics.events.partitions import partition_name

DAYS_AGO = 10


async def _episode(db: Database, tenant_id: uuid.UUID) -> uuid.UUID:
    podcast, episode = uuid.uuid4(), uuid.uuid4()
    async with db.tenant_transaction(tenant_id) as session:
        await session.execute(
            text("INSERT INTO podcasts (tenant_id, id, name) VALUES (:t, :p, 'Old news')"),
            {"t": tenant_id, "p": podcast},
        )
        await session.execute(
            text("INSERT INTO episodes (tenant_id, id, podcast_id, guid, title) VALUES (:t, :e, :p, :e, 'One')"),
            {"t": tenant_id, "e": episode, "p": podcast},
        )
    return episode


async def _ingest(db: Database, tenant: Any, events: list[dict[str, Any]]) -> service.IngestResult:
    async with db.tenant_transaction(tenant.id) as session:
        return await service.ingest(
            session, tenant, "listener", enumerate(events), db=db, retention_days=730, enforce_limits=False
        )


async def _stored(db: Database, tenant_id: uuid.UUID, day: Any) -> int:
    async with db.tenant_transaction(tenant_id) as session:
        return int(
            (
                await session.execute(
                    text(
                        "SELECT count(*) FROM listener_events WHERE tenant_id = :t "
                        "AND occurred_at >= :start AND occurred_at < :end"
                    ),
                    {"t": tenant_id, "start": day, "end": day + timedelta(days=1)},
                )
            ).scalar_one()
        )


async def test_old_days_become_columnar_and_stay_idempotent(db: Database, owner_db: Database, make_tenant: Any) -> None:
    tenant = await make_tenant()
    episode = await _episode(db, tenant.id)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DAYS_AGO)
    events = [
        {
            "id": str(uuid.uuid4()),
            "episode_id": str(episode),
            "listener_id": f"listener-{n % 40}",
            "event_type": "play",
            "occurred_at": (day + timedelta(minutes=n)).isoformat(),
            "event_data": {"listened_seconds": n % 600, "position": n},
        }
        for n in range(300)
    ]
    assert (await _ingest(db, tenant, events)).accepted == 300
    name = partition_name("listener", day.date())
    async with owner_db.transaction() as session:  # a heap day: its own unique key and batch index
        unique = await session.execute(
            text(
                "SELECT array_agg(indisunique ORDER BY indisunique) FROM pg_index WHERE indrelid = CAST(:t AS regclass)"
            ),
            {"t": f"castmetrics_events.{name}"},
        )
        assert unique.scalar_one() == [False, True]

    done = await partitions.maintain(db, 730, columnar_after_days=7)
    assert name in (done["columnar"] or [])
    async with owner_db.transaction() as session:
        method = await session.execute(
            text(
                "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                "WHERE c.relnamespace = 'castmetrics_events'::regnamespace AND c.relname = :name"
            ),
            {"name": name},
        )
        assert method.scalar_one() == "columnar"
        indexes = await session.execute(
            text("SELECT count(*) FROM pg_index WHERE indrelid = CAST(:t AS regclass)"),
            {"t": f"castmetrics_events.{name}"},
        )
        assert indexes.scalar_one() == 0
    # a second run converts nothing more
    assert name not in ((await partitions.maintain(db, 730, columnar_after_days=7))["columnar"] or [])

    again = await _ingest(db, tenant, events[:120])
    assert (again.accepted, again.duplicates) == (0, 120)
    assert await _stored(db, tenant.id, day) == 300

    late = {**events[0], "id": str(uuid.uuid4())}
    mixed = await _ingest(db, tenant, [late, events[1], late])
    assert (mixed.accepted, mixed.duplicates) == (1, 2)
    assert await _stored(db, tenant.id, day) == 301

    # another tenant's identical ids are its own events, not duplicates
    other = await make_tenant()
    other_episode = await _episode(db, other.id)
    theirs = [{**event, "episode_id": str(other_episode)} for event in events[:10]]
    assert (await _ingest(db, other, theirs)).accepted == 10


async def test_digests_go_with_their_days_past_the_retention_only(
    db: Database, owner_db: Database, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    episode = await _episode(db, tenant.id)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DAYS_AGO)
    events = [
        {"id": str(uuid.uuid4()), "episode_id": str(episode), "listener_id": "l", "event_type": "play",
         "occurred_at": (day + timedelta(minutes=n)).isoformat()}
        for n in range(5)
    ]  # fmt: skip
    assert (await _ingest(db, tenant, events)).accepted == 5
    await partitions.maintain(db, 730, columnar_after_days=7)

    async def digest_rows() -> int:
        async with db.tenant_transaction(tenant.id) as session:
            return int((await session.execute(text("SELECT count(*) FROM event_digests"))).scalar_one())

    assert await digest_rows() > 0
    async with db.transaction() as session:  # a caller asking for more than the retention gets nothing
        await session.execute(text("SELECT castmetrics_event_digests_expire(current_date)"))
    assert await digest_rows() > 0
    setting = "SELECT value FROM castmetrics_settings WHERE name = 'event_retention_days'"
    change = "UPDATE castmetrics_settings SET value = :v WHERE name = 'event_retention_days'"
    async with owner_db.transaction() as session:  # the operator shortens the retention to 5 days
        kept = (await session.execute(text(setting))).scalar_one()
        await session.execute(text(change), {"v": "5"})
    try:
        await partitions.maintain(db, 5, columnar_after_days=2)
        assert await digest_rows() == 0
    finally:
        async with owner_db.transaction() as session:
            await session.execute(text(change), {"v": kept})
