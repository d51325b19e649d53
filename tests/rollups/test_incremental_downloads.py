"""Incremental refresh of the download side: cycles that add new batches of prefix requests to the download
rollups leave them equal to a recount from raw requests (the IAB rules of docs/measurement.md), whatever mix
of new, late, repeated and out-of-order requests arrives across hour and day edges: bots, probes, HEAD
requests, range-only clients reaching the minute of audio over two batches, and requests that matched no
episode until one was created."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement import counting
from castmetrics.measurement import service as measurement
from castmetrics.measurement.prefix import Buffer, RawRequest
from castmetrics.measurement.recorder import Recorder
from castmetrics.rollups import service as rollups
from tests.factories.measurement import APPLE, OVERCAST, SPOTIFY, Show, make_show, request

TABLES = ("download_daily", "download_hourly", "download_breakdown_daily", "download_listeners_daily")
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
AGENTS = [APPLE, APPLE, OVERCAST, SPOTIFY, BOT, ""]
ADDRESSES = [f"8.8.{n // 200}.{n % 200 + 1}" for n in range(30)] + ["81.2.69.160", "10.1.2.3", "2001:db8:aa::1"]
# one minute of the shows' episodes is 1,000,000 bytes + 10,240 (ID3): these ranges need two or three requests
RANGES = [
    "",
    "",
    "bytes=0-",
    "bytes=0-1",
    "bytes=0-599999",
    "bytes=600000-1099999",
    "bytes=0-399999",
    "bytes=0-2000000",
]


def _moment(rng: random.Random, now: datetime) -> datetime:
    """Mostly at the edges of hours and days (the first and last instants), over the last three days."""
    day = now.date() - timedelta(days=rng.randrange(3))
    edge = rng.choice([timedelta(0), timedelta(hours=1) - timedelta(milliseconds=1), timedelta(minutes=30)])
    moment = datetime.combine(day, time(rng.randrange(24)), tzinfo=UTC) + edge
    return min(moment, now - timedelta(seconds=1))


async def _record(recorder: Recorder, requests: list[RawRequest]) -> None:
    for item in requests:
        recorder.buffer.append(item)
    await recorder.flush()  # one transaction: one batch


async def _snapshot(db: Database, tenant_id: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    async with db.tenant_transaction(tenant_id) as session:
        return {
            table: sorted(tuple(row) for row in (await session.execute(text(f"SELECT * FROM {table}"))).all())
            for table in TABLES
        }


async def _reference_downloads(db: Database, tenant_id: uuid.UUID, first: date, last: date) -> int:
    start, _ = counting.day_bounds(first)
    _, end = counting.day_bounds(last)
    async with db.tenant_transaction(tenant_id) as session:
        found = await session.execute(
            text(f"SELECT count(*) FROM ({counting.downloads_query()}) d"), {"t": tenant_id, "start": start, "end": end}
        )
        return int(found.scalar_one())


async def test_download_cycles_of_new_late_repeated_and_out_of_order_requests_equal_a_recount(
    client: httpx.AsyncClient, db: Database, owner_db: Database, make_team: Any, settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(19)
    team = await make_team("pro")
    shows = [await make_show(client, team, owner_db, episodes=2), await make_show(client, team, owner_db, episodes=1)]
    recorder = Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())
    late_url = f"https://cdn.example.net/{uuid.uuid4().hex[:8]}/late.mp3"
    late_show = Show(team, shows[0].podcast_id, [], [late_url])
    now = datetime.now(UTC)
    today = now.date()

    def random_request() -> RawRequest:
        show = rng.choice([*shows, late_show])
        return request(
            show,
            rng.randrange(len(show.audio_urls)),
            address=rng.choice(ADDRESSES),
            agent=rng.choice(AGENTS),
            method=rng.choice(["GET"] * 8 + ["HEAD"]),
            range_=rng.choice(RANGES),
            at=_moment(rng, now),
        )

    # range-only clients that reach the minute only with their second batch, one of them across a day edge
    crossing = [
        (request(shows[0], address="7.7.7.1", range_="bytes=0-599999", at=now - timedelta(minutes=5)),
         request(shows[0], address="7.7.7.1", range_="bytes=600000-1099999", at=now - timedelta(minutes=6))),
        (request(shows[1], address="7.7.7.2", range_="bytes=0-699999",
                 at=datetime.combine(today, time(0), tzinfo=UTC)),
         request(shows[1], address="7.7.7.2", range_="bytes=700000-1399999",
                 at=datetime.combine(today, time(0), tzinfo=UTC) - timedelta(milliseconds=1))),  # yesterday: alone
    ]  # fmt: skip
    sent: list[RawRequest] = []
    for round_ in range(8):
        batch = [random_request() for _ in range(rng.randrange(40, 160))]
        batch += rng.sample(sent, min(len(sent), 20))  # the same requests again (repeated requests of a client)
        if round_ < len(crossing):
            batch.append(crossing[round_][0])
        elif round_ < 2 * len(crossing):
            batch.append(crossing[round_ - len(crossing)][1])
        rng.shuffle(batch)  # out of order
        await _record(recorder, batch)
        sent += batch
        if round_ == 4:
            # the episode the late URL points at appears: the recent days are noted outside any batch and
            # recounted whole (their unmatched requests matched), leaving out the batches still pending
            created = await client.post(
                f"/v1/podcasts/{shows[0].podcast_id}/episodes",
                json={"title": "Late", "audio_url": late_url, "duration_seconds": 3600},
                headers=team.auth("owner"),
            )
            assert created.status_code == 201, created.text
            async with owner_db.transaction() as session:
                await session.execute(
                    text("UPDATE episodes SET audio_length_bytes = 60000000 WHERE id = :id"),
                    {"id": created.json()["id"]},
                )
        for _ in range(rng.randrange(3)):  # zero to two small cycles: part of the backlog is carried over
            await rollups.refresh_cycle(db, cycle_events=90, tenant_ids=[team.tenant_id])
    while (await rollups.refresh_cycle(db, cycle_events=90, tenant_ids=[team.tenant_id])).events:
        pass
    async with db.tenant_transaction(team.tenant_id) as session:
        assert (await session.execute(text("SELECT count(*) FROM rollup_invalidations"))).scalar_one() == 0
        stored = (await session.execute(text("SELECT count(*) FROM download_requests"))).scalar_one()
        unmatched = (
            await session.execute(text("SELECT count(*) FROM download_requests WHERE episode_id IS NULL"))
        ).scalar_one()
    assert stored == len(sent) and unmatched == 0
    incremental = await _snapshot(db, team.tenant_id)
    first = today - timedelta(days=measurement.REMATCH_DAYS)  # the days the new episode noted
    # a rebuild recounts every day from raw requests: the same rows
    async with db.tenant_transaction(team.tenant_id) as session:
        for table in TABLES:
            await session.execute(text(f"DELETE FROM {table}"))
        await rollups.rebuild(session, team.tenant_id, first, today, kinds=("download",))
    assert await _snapshot(db, team.tenant_id) == incremental
    tenant_downloads = sum(row[4] for row in incremental["download_listeners_daily"] if row[2] == uuid.UUID(int=0))
    assert tenant_downloads == await _reference_downloads(db, team.tenant_id, first, today) > 0


async def test_a_range_only_client_counts_once_its_second_batch_reaches_the_minute(
    client: httpx.AsyncClient, db: Database, owner_db: Database, make_team: Any, settings: Settings, tmp_path: Path
) -> None:
    team = await make_team("pro")
    show = await make_show(client, team, owner_db)
    recorder = Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())
    now = datetime.now(UTC)

    async def counted() -> tuple[int, int]:
        await rollups.refresh_cycle(db, cycle_events=10**6, tenant_ids=[team.tenant_id])
        async with db.tenant_transaction(team.tenant_id) as session:
            row = (
                await session.execute(
                    text(
                        "SELECT downloads, listeners FROM download_listeners_daily WHERE scope_id = :all AND day = :d"
                    ),
                    {"all": uuid.UUID(int=0), "d": now.date()},
                )
            ).one_or_none()
        return (row.downloads, row.listeners) if row else (0, 0)

    await _record(recorder, [request(show, address="4.4.4.1", range_="bytes=0-599999", at=now)])
    assert await counted() == (0, 0)
    await _record(recorder, [request(show, address="4.4.4.1", method="HEAD", at=now)])  # HEAD: nothing
    assert await counted() == (0, 0)
    await _record(recorder, [request(show, address="4.4.4.1", range_="bytes=0-1", at=now)])  # a probe: nothing
    assert await counted() == (0, 0)
    # the second range reaches the minute; it was requested earlier than the first (out of order)
    await _record(
        recorder, [request(show, address="4.4.4.1", range_="bytes=600000-1099999", at=now - timedelta(seconds=30))]
    )
    assert await counted() == (1, 1)
    await _record(recorder, [request(show, address="4.4.4.1", at=now), request(show, 1, address="4.4.4.1", at=now)])
    assert await counted() == (2, 1)  # a second episode: a download more, the same listener
    await _record(recorder, [request(show, address="4.4.4.1", agent=BOT, at=now)])  # another client, a bot
    assert await counted() == (2, 1)
    # the hour of the download is its first request's, which the out-of-order range moved
    async with db.tenant_transaction(team.tenant_id) as session:
        hours = (
            await session.execute(
                text("SELECT hour, downloads FROM download_hourly WHERE scope_id = :e"),
                {"e": uuid.UUID(show.episode_ids[0])},
            )
        ).all()
    first = (now - timedelta(seconds=30)).replace(minute=0, second=0, microsecond=0)
    assert [(row.hour, row.downloads) for row in hours] == [(first, 1)]
