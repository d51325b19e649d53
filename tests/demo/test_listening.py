"""Demo listening: stored once, repeatable, shaped like real listening, and reachable from the CLI."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select, text

from castmetrics import cli
from castmetrics.auth.principal import Actor
from castmetrics.catalog import service as catalog
from castmetrics.catalog.models import Podcast
from castmetrics.catalog.schemas import EpisodeIn
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo import audience, listening
from castmetrics.demo import service as demo
from castmetrics.events.rollups import ALL_PODCASTS as ALL
from tests.support.cli import run_cli
from tests.support.clock import WEDNESDAY, pinned
from tests.support.partitions import drop_partitions_keeping

DAYS = 56  # eight weeks keep the test database small; the CLI default is 700


@pytest.fixture
async def drop_old_partitions(db: Database, owner_url: str) -> AsyncIterator[None]:
    """The generator creates a partition per day of its window; leave the next tests few tables."""
    yield
    await drop_partitions_keeping(db, owner_url, 2)


async def count_events(db: Database, tenant_id: uuid.UUID) -> int:
    async with db.tenant_transaction(tenant_id) as session:
        return int((await session.execute(text("SELECT count(*) FROM listener_events"))).scalar_one())


@pytest.mark.usefixtures("drop_old_partitions")
async def test_listening_is_stored_once_with_seasonality_decay_and_drop_off(
    owner_db: Database, db: Database, settings: Settings
) -> None:
    # A Wednesday afternoon whatever day the tests run: the demo shows' newest episodes come out two days
    # before it, and their launch peaks stay off the weekend the weekday/weekend check compares (run on a
    # Monday, with the newest episodes out on the Saturday, the weekend beat the weekdays).
    now = pinned(WEDNESDAY, time(14, 37))
    summary = await demo.seed(owner_db, db, settings, now=now)
    tenant_id = summary.tenant.id
    # The bundled feeds are years old (back catalog only): add an episode launched inside the window.
    published = (now - timedelta(days=21)).replace(hour=5, minute=0, second=0, microsecond=0)
    async with db.tenant_transaction(tenant_id) as session:
        podcast = (await session.scalars(select(Podcast).order_by(Podcast.name))).first()
        assert podcast is not None
        launched = await catalog.create_episode(
            session, Actor.system("tests"), podcast,
            EpisodeIn(title="Launch week", published_at=published, duration_seconds=2_400),
        )  # fmt: skip

    first = await listening.generate(db, tenant_id, 20_000, retention_days=730, now=now, days=DAYS)
    assert first.rejected == 0, first.errors
    assert 17_000 <= first.events <= 23_000
    assert first.accepted == first.events and first.duplicates == 0
    assert first.rollup_days == DAYS + 1
    assert await count_events(db, tenant_id) == first.events

    again = await listening.generate(db, tenant_id, 20_000, retention_days=730, now=now, days=DAYS)
    assert (again.events, again.accepted, again.duplicates) == (first.events, 0, first.events)
    assert await count_events(db, tenant_id) == first.events

    async with db.tenant_transaction(tenant_id) as session:
        days = (
            await session.execute(
                text(
                    "SELECT day, sum(events) AS events FROM listener_daily "
                    "WHERE scope_id <> :launched AND scope_id IN (SELECT id FROM episodes) GROUP BY day"
                ),
                {"launched": launched.id},
            )
        ).all()
        launch = (
            await session.execute(
                text(
                    "SELECT count(*) FILTER (WHERE l.occurred_at < e.published_at + interval '7 days'), "
                    "count(*) FILTER (WHERE l.occurred_at >= e.published_at + interval '7 days' "
                    "AND l.occurred_at < e.published_at + interval '14 days') "
                    "FROM listener_events l JOIN episodes e ON e.id = l.episode_id "
                    "WHERE l.event_type = 'play' AND e.published_at BETWEEN :start AND :fortnight_ago"
                ),
                {"start": now - timedelta(days=DAYS), "fortnight_ago": now - timedelta(days=14)},
            )
        ).one()
        early = (
            await session.execute(
                text("SELECT count(*) FROM listener_events WHERE episode_id = :launched AND occurred_at < :published"),
                {"launched": launched.id, "published": published},
            )
        ).scalar_one()
        totals = (
            await session.execute(
                text(
                    "SELECT sum(plays), sum(completes), sum(skips), sum(downloads), sum(pauses), "
                    "sum(resumes), sum(seeks), sum(progresses), sum(listen_seconds) FROM listener_daily "
                    "WHERE scope_id = :all"
                ),
                {"all": ALL},
            )
        ).one()
        bounds = (await session.execute(text("SELECT min(occurred_at), max(occurred_at) FROM listener_events"))).one()

    # whole UTC days of the back catalog: weekdays above weekends
    first_day = audience.plan([], 0, now=now, days=DAYS).start.date()
    whole = [(day, int(n)) for day, n in days if first_day < day < now.date()]
    weekday = [n for day, n in whole if day.weekday() < 5]
    weekend = [n for day, n in whole if day.weekday() >= 5]
    assert sum(weekday) / len(weekday) > 1.15 * sum(weekend) / len(weekend)
    # episodes launched in the window (ours and the demo's recent ones): the first week after publication
    # far outdoes the second (about 3.9 times by the plan); nobody listens before an episode is out
    assert launch[0] > 2 * launch[1] > 0
    assert early == 0
    plays, completes, skips, downloads, pauses, resumes, seeks, progresses, seconds = totals
    assert 0 < completes < plays and skips > 0 and seeks > 0 and 0 < downloads < plays
    assert 0 < resumes <= pauses and progresses > plays and seconds > 0  # a resume may still be to come
    assert now - timedelta(days=DAYS, hours=1) <= bounds[0] and bounds[1] < now


def episode(published: datetime | None, duration: int | None = 1_800) -> audience.DemoEpisode:
    return audience.DemoEpisode(uuid.uuid4(), uuid.UUID(int=1), published, duration)


def test_the_plan_is_repeatable_and_stays_in_its_window() -> None:
    now = datetime(2026, 6, 10, 14, 37, tzinfo=UTC)
    old, recent = episode(datetime(2016, 1, 29, tzinfo=UTC)), episode(now - timedelta(days=3), None)
    future = episode(now + timedelta(days=2))
    episodes = [old, recent, future, episode(None)]
    plan = audience.plan(episodes, 5_000, now=now, days=30)
    assert plan.until == datetime(2026, 6, 10, 14, tzinfo=UTC) and plan.start == plan.until - timedelta(days=30)
    batches = list(plan.batches(size=700))
    assert all(len(batch) <= 700 for batch in batches)
    produced = [event for batch in batches for event in batch]
    rerun = audience.plan(episodes, 5_000, now=now, days=30)
    assert produced == [event for batch in rerun.batches() for event in batch]
    assert 4_000 <= len(produced) <= 6_000
    assert len({event["id"] for event in produced}) == len(produced)
    moments = [datetime.fromisoformat(event["occurred_at"]) for event in produced]
    assert plan.start <= min(moments) and max(moments) < plan.until
    by_episode = {str(e.id): [m for m, ev in zip(moments, produced, strict=True) if ev["episode_id"] == str(e.id)]
                  for e in episodes}  # fmt: skip
    assert by_episode[str(future.id)] == []
    assert by_episode[str(old.id)] and min(by_episode[str(recent.id)]) >= recent.published_at  # type: ignore[operator]
    offsets = {moment.utcoffset() for moment in moments}
    assert timedelta(hours=-5) in offsets and timedelta(hours=1) in offsets  # listeners around the world
    listeners = [event["listener_id"] for event in produced if event["event_type"] == "play"]
    assert len(set(listeners)) < len(listeners)  # repeat listeners


def test_fewer_listeners_remain_the_further_into_the_episode() -> None:
    rng = random.Random(7)
    reached = [0] * 5  # sessions reaching 0%, 25%, 50%, 75% of a one-hour episode, and its end
    for _ in range(2_000):
        script = audience.session_script(rng, 3_600)
        times = [t for t, _, _ in script]
        assert times == sorted(times)
        kinds = [kind for _, kind, _ in script]
        assert kinds[0] in ("download", "play") and "play" in kinds[:2]
        assert "complete" not in kinds[:-1]
        furthest = max((data or {}).get("position_seconds", 0) for _, _, data in script)
        for n, mark in enumerate((0, 900, 1_800, 2_700)):
            reached[n] += furthest > mark
        reached[4] += kinds[-1] == "complete"
        listened = sum((data or {}).get("listened_seconds", 0) for _, kind, data in script if kind == "progress")
        assert 0 < listened <= 3_600 + 60 * kinds.count("seek")
    assert reached == sorted(reached, reverse=True) and reached[0] > 1.5 * reached[4] > 0


@pytest.mark.usefixtures("drop_old_partitions")
def test_demo_command_generates_then_stores_nothing_twice(settings: Settings, runtime_url: str) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = run_cli(settings, "demo", "--events", "3000", "--days", "14")
    assert first.returncode == 0, first.stderr
    assert "Listening: " in first.stdout and "events/s" in first.stdout and "duplicates" in first.stdout
    assert "Downloads: " in first.stdout and "prefix requests" in first.stdout and "from bots" in first.stdout
    assert "owner@demo.example.com" in first.stdout
    second = run_cli(settings, "demo", "--events", "3000", "--days", "14")
    assert second.returncode == 0, second.stderr
    if datetime.now(UTC).replace(minute=0, second=0, microsecond=0) == hour:  # the window ends at the hour
        assert "(0 new, " in second.stdout and "prefix requests (0 new, " in second.stdout


@pytest.mark.usefixtures("drop_old_partitions")
def test_serve_demo_generates_listening_only_the_first_time(
    settings: Settings, owner_url: str, runtime_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with_events = settings.model_copy(update={"demo_events": 1_000})
    cli._seed_demo(with_events, owner_url, runtime_url, days=7)
    assert "Listening: " in capsys.readouterr().out
    cli._seed_demo(with_events, owner_url, runtime_url, days=7)
    assert "Listening: " not in capsys.readouterr().out


def test_no_events_without_a_catalog() -> None:
    plan = audience.plan([], 1_000, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert list(plan.batches()) == [] and plan.expected_events == 0
    assert plan.utc_days == (date(2024, 2, 1), date(2025, 12, 31))
