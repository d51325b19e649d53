"""Storage: day partitions across day boundaries, retention, isolation of the partitions."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db import urls
from castmetrics.db.migrate import set_event_retention
from castmetrics.db.session import Database
from castmetrics.events import partitions
from tests.factories.events import Catalog, listener_event
from tests.support.partitions import drop_partitions_keeping


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


def event_partitions(owner_url: str) -> set[str]:
    """The names of every day partition of the event tables, read from the catalog."""
    with psycopg.connect(urls.libpq_url(owner_url)) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = ANY(%s::regclass[])",
            ([f"public.{table}" for table in partitions.TABLES.values()],),
        ).fetchall()
    return {name for (name,) in rows}


def day_partitions(day: date) -> set[str]:
    return {partitions.partition_name(kind, day) for kind in partitions.KINDS}


async def events_per_day(db: Database, tenant_id: uuid.UUID) -> dict[date, int]:
    async with db.tenant_transaction(tenant_id) as session:
        rows = await session.execute(
            text("SELECT (occurred_at AT TIME ZONE 'UTC')::date, count(*) FROM listener_events GROUP BY 1")
        )
        return {day: int(count) for day, count in rows}


def frozen_clock(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setattr(partitions, "utc_now", lambda: moment)


async def test_retention_moves_by_one_whole_day_at_midnight(
    client: httpx.AsyncClient,
    catalog: Catalog,
    db: Database,
    owner_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rule (``partitions.drop_expired``): with a retention of N days and the clock on day D, the
    days D-N+1 .. D are kept (N whole days, today included) and every partition of a day before
    D-N+1 is dropped. So at 23:59:59 on D the oldest kept day is D-2 (N = 3), and one second later,
    at 00:00:00 on D+1, the partitions of D-2 go and nothing else does.

    The clock is the module's ``utc_now``, as the periodic job reads it (``maintain`` without
    ``now``). D lies in the past so the database's own floor (the recorded retention counted from
    its ``current_date``) never clamps the cutoff the clock asks for."""
    retention = 3
    day = datetime.now(UTC).date() - timedelta(days=5)  # D
    days = [day + timedelta(days=n) for n in range(-3, 2)]  # D-3 .. D+1
    # given: one event at the first and one at the last second of each day from D-3 to D+1
    batch = [
        listener_event(catalog.episode_ids[0], occurred_at=datetime.combine(d, at, tzinfo=UTC).isoformat())
        for d in days
        for at in (time(0, 0, 0), time(23, 59, 59))
    ]
    stored = await client.post("/v1/events/listener", json=batch, headers=catalog.team.auth("owner"))
    assert stored.status_code == 200, stored.text
    assert stored.json()["accepted"] == 10
    assert await events_per_day(db, catalog.team.tenant_id) == dict.fromkeys(days, 2)
    # and an operator retention of 3 days recorded where the database reads its floor
    set_event_retention(owner_url, retention)
    try:
        # when: the job runs at 23:59:59 on D
        frozen_clock(monkeypatch, datetime.combine(day, time(23, 59, 59), tzinfo=UTC))
        before_midnight = await partitions.maintain(db, retention_days=retention)
        # then: D-3 (and anything older) is dropped; D-2, D-1 and D are kept with all their rows
        assert isinstance(before_midnight["dropped"], list)
        dropped_first = set(before_midnight["dropped"])
        assert day_partitions(day - timedelta(days=3)) <= dropped_first
        assert all(name[-8:] < f"{day - timedelta(days=2):%Y%m%d}" for name in dropped_first)
        present = event_partitions(owner_url)
        assert day_partitions(day - timedelta(days=3)).isdisjoint(present)
        assert set().union(*(day_partitions(d) for d in days[1:])) <= present
        assert await events_per_day(db, catalog.team.tenant_id) == dict.fromkeys(days[1:], 2)

        # when: the job runs one second later, at 00:00:00 on D+1
        frozen_clock(monkeypatch, datetime.combine(day + timedelta(days=1), time(0, 0, 0), tzinfo=UTC))
        after_midnight = await partitions.maintain(db, retention_days=retention)
    finally:
        set_event_retention(owner_url, settings.event_retention_days)
    # then: exactly the partitions of D-2 are dropped, with its two rows; D-1, D and D+1 are untouched
    assert isinstance(after_midnight["dropped"], list)
    assert set(after_midnight["dropped"]) == day_partitions(day - timedelta(days=2))
    present = event_partitions(owner_url)
    assert day_partitions(day - timedelta(days=2)).isdisjoint(present)
    assert set().union(*(day_partitions(d) for d in days[2:])) <= present
    assert await events_per_day(db, catalog.team.tenant_id) == dict.fromkeys(days[2:], 2)


async def test_start_up_prepares_partitions_from_yesterday_to_a_week_ahead(
    settings: Settings, db: Database, owner_db: Database, owner_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up (the app's lifespan, through ``_prepare_partitions``) creates the partitions of every
    event table for the days from yesterday to today + 7, by the module's clock."""
    # given: a clock on a day no partition exists around (the week ahead crosses the end of February)
    now = datetime(2019, 2, 26, 22, 15, tzinfo=UTC)
    frozen_clock(monkeypatch, now)
    expected_days = [now.date() + timedelta(days=n) for n in range(-1, partitions.AHEAD_DAYS + 1)]
    assert [f"{d:%Y%m%d}" for d in (expected_days[0], expected_days[-1])] == ["20190225", "20190305"]
    window = [now.date() + timedelta(days=n) for n in range(-2, partitions.AHEAD_DAYS + 2)]
    assert set().union(*(day_partitions(d) for d in window)).isdisjoint(event_partitions(owner_url))
    # when: the application starts and stops
    app = create_app(settings, database=db, admin_database=owner_db)
    async with app.router.lifespan_context(app):
        present = event_partitions(owner_url)
    # then: listener and attribution (and download request) partitions exist for exactly those days
    for d in expected_days:
        assert f"listener_events_p{d:%Y%m%d}" in present
        assert f"attribution_events_p{d:%Y%m%d}" in present
        assert day_partitions(d) <= present
    # and none for the day before yesterday or the eighth day ahead
    assert day_partitions(window[0]).isdisjoint(present)
    assert day_partitions(window[-1]).isdisjoint(present)


async def test_the_retention_floor_counts_utc_days_whatever_the_sessions_time_zone(
    client: httpx.AsyncClient, catalog: Catalog, db: Database, owner_url: str, settings: Settings
) -> None:
    """The database's own floor (never drop a day the operator's retention keeps) is counted in UTC days,
    like the partitions: a session far west of UTC (Etc/GMT+12) must not keep a day more, nor one far
    east (Etc/GMT-14) drop a day more. At every hour of the UTC day one of the two zones is on another
    date than UTC, so with the session's own ``current_date`` one of the two checks below fails."""
    retention = 3
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in range(4, -1, -1)]  # today-4 .. today
    batch = [listener_event(catalog.episode_ids[0], occurred_at=datetime.combine(d, time(12), tzinfo=UTC).isoformat())
             for d in days]  # fmt: skip
    stored = await client.post("/v1/events/listener", json=batch, headers=catalog.team.auth("owner"))
    assert stored.status_code == 200 and stored.json()["accepted"] == len(days), stored.text
    set_event_retention(owner_url, retention)
    try:
        dropped: dict[str, set[str]] = {}
        for zone in ("Etc/GMT+12", "Etc/GMT-14"):
            async with db.transaction() as session:
                await session.execute(text(f"SET LOCAL TIME ZONE '{zone}'"))
                rows = await session.execute(
                    text("SELECT * FROM castmetrics_event_partitions_drop(:before)"), {"before": date(2100, 1, 1)}
                )
                dropped[zone] = {row[0] for row in rows}
    finally:
        set_event_retention(owner_url, settings.event_retention_days)
        partitions.cache_for(db).clear()  # the function was called directly: forget the days it dropped
    # then: the first call drops exactly the days before today-2 (UTC); the second finds nothing left
    oldest_kept = today - timedelta(days=retention - 1)
    assert (
        day_partitions(today - timedelta(days=4)) | day_partitions(today - timedelta(days=3)) <= dropped["Etc/GMT+12"]
    )
    assert all(name[-8:] < f"{oldest_kept:%Y%m%d}" for name in dropped["Etc/GMT+12"])
    assert dropped["Etc/GMT-14"] == set()
    assert await events_per_day(db, catalog.team.tenant_id) == dict.fromkeys(days[2:], 1)
