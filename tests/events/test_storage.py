"""Storage: day partitions across day boundaries, retention, isolation of the partitions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from castmetrics.db import urls
from castmetrics.db.session import Database
from castmetrics.events import partitions
from tests.conftest import drop_partitions_keeping
from tests.events.conftest import Catalog, listener_event


def partition_days(owner_url: str) -> set[str]:
    with psycopg.connect(urls.libpq_url(owner_url)) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'public.listener_events'::regclass"
        ).fetchall()
    return {name[-8:] for (name,) in rows}


def ymd(moment: datetime) -> str:
    return f"{moment:%Y%m%d}"


async def test_partitions_follow_the_clock_across_day_boundaries(db: Database, owner_url: str) -> None:
    # 23:59:59 on one day, then one second later the next day: the week ahead moves by one day.
    today = datetime.now(UTC).replace(hour=23, minute=59, second=59, microsecond=0)
    await partitions.maintain(db, retention_days=730, now=today)
    days = partition_days(owner_url)
    assert {ymd(today + timedelta(days=n)) for n in range(-1, 8)} <= days
    tomorrow = today + timedelta(seconds=1)
    assert ymd(tomorrow + timedelta(days=7)) not in days
    await partitions.maintain(db, retention_days=730, now=tomorrow)
    assert ymd(tomorrow + timedelta(days=7)) in partition_days(owner_url)


async def test_retention_drops_whole_old_days_only(
    client: httpx.AsyncClient, catalog: Catalog, db: Database, owner_url: str
) -> None:
    now = datetime.now(UTC)
    owner = catalog.team.auth("owner")
    old, kept = now - timedelta(days=10), now - timedelta(days=4)
    batch = [
        listener_event(catalog.episode_ids[0], occurred_at=old.isoformat()),
        listener_event(catalog.episode_ids[0], occurred_at=kept.isoformat()),
    ]
    # ingestion creates the missing (backfill) days on demand
    stored = await client.post("/v1/events/listener", json=batch, headers=owner)
    assert stored.json()["accepted"] == 2
    assert {ymd(old), ymd(kept)} <= partition_days(owner_url)
    # retention of 5 days: today and the 4 days before are kept
    dropped = await drop_partitions_keeping(db, owner_url, 5)
    assert f"listener_events_p{ymd(old)}" in dropped and f"attribution_events_p{ymd(old)}" in dropped
    days = partition_days(owner_url)
    assert ymd(old) not in days and ymd(kept) in days
    async with db.tenant_transaction(catalog.team.tenant_id) as session:
        remaining = (await session.execute(text("SELECT occurred_at FROM listener_events"))).scalars().all()
    assert [moment.date() for moment in remaining] == [kept.date()]
    # ingestion after the drop recreates what it needs (within the accepted range)
    again = await client.post(
        "/v1/events/listener", json=[listener_event(catalog.episode_ids[0], occurred_at=old.isoformat())], headers=owner
    )
    assert again.json()["accepted"] == 1


async def test_retention_never_drops_more_than_the_operator_keeps(db: Database, owner_url: str) -> None:
    # the runtime role passes the date; the database holds it to the retention the migration recorded
    ten_days_ago = datetime.now(UTC).date() - timedelta(days=10)
    await partitions.ensure(db, ten_days_ago, ten_days_ago)
    for today in (datetime.now(UTC).date(), datetime.now(UTC).date() + timedelta(days=400)):
        assert await partitions.drop_expired(db, today, retention_days=2) == []
    assert ymd(datetime.combine(ten_days_ago, datetime.min.time())) in partition_days(owner_url)


def test_the_accepted_range_is_whole_days_of_retention() -> None:
    just_after_midnight = datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC)
    accepted = partitions.AcceptedRange.at(just_after_midnight, retention_days=2)
    assert accepted.earliest == datetime(2026, 11, 24, tzinfo=UTC)
    assert accepted.latest == datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC)


async def test_the_runtime_role_cannot_read_partitions_or_append_another_tenants_rows(
    catalog: Catalog, db: Database, make_team
) -> None:  # type: ignore[no-untyped-def]
    other = await make_team("pro")
    today = datetime.now(UTC)
    await partitions.ensure(db, today.date(), today.date())
    partition = f"castmetrics_events.listener_events_p{ymd(today)}"
    async with db.tenant_transaction(catalog.team.tenant_id) as session:
        with pytest.raises(ProgrammingError, match="permission denied"):
            await session.execute(text(f"SELECT count(*) FROM {partition}"))
    row = {"id": uuid.uuid4(), "ep": uuid.UUID(catalog.episode_ids[0]), "at": today}
    insert = (
        "INSERT INTO {table} (tenant_id, id, episode_id, listener_id, event_type, occurred_at) "
        "VALUES (:tenant, :id, :ep, 'l', 'play', :at)"
    )
    # acting for one tenant, a row claiming another tenant is refused: by the trigger on the
    # partition, and by row-level security on the parent
    for table in (partition, "listener_events"):
        with pytest.raises(DBAPIError, match="another tenant|row-level security"):
            async with db.tenant_transaction(catalog.team.tenant_id) as session:
                await session.execute(text(insert.format(table=table)), {**row, "tenant": other.tenant_id})
    # with no tenant set, even the tenant's own rows cannot go into a partition
    with pytest.raises(DBAPIError, match="another tenant"):
        async with db.transaction() as session:
            await session.execute(text(insert.format(table=partition)), {**row, "tenant": catalog.team.tenant_id})
