"""Delivery pacing of IO bookings (docs/api.md "Pacing"): the numbers of the route and of the service at a
chosen instant, spend, delivery by day, and the ``booking.pacing_behind`` alert of the periodic check."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement import service as measurement
from castmetrics.measurement.prefix import Buffer
from castmetrics.measurement.recorder import Recorder
from castmetrics.rollups import service as rollups_service
from castmetrics.sponsorship import pacing, service
from castmetrics.sponsorship import tasks as sponsorship_tasks
from castmetrics.sponsorship.models import Booking
from castmetrics.sponsorship.schemas import CampaignPacingOut
from tests.factories.catalog import make_podcast
from tests.factories.identity import Team
from tests.factories.measurement import Show, make_show, request
from tests.factories.sponsorship import make_booking, make_campaign, make_sponsor

NUMBERS = ("phase", "elapsed", "booked", "delivered", "expected_to_date", "projected", "pace", "status")
SPEND = ("currency", "spend_to_date", "spend_to_date_minor")


@pytest.fixture
def recorder(settings: Settings, db: Database, tmp_path: Path) -> Recorder:
    return Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), UTC)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


async def download(recorder: Recorder, show: Show, episode: int, count: int, at: datetime) -> None:
    """``count`` IAB downloads of the show's episode at ``at``, each from its own listener, counted
    into the daily rollups."""
    for _ in range(count):
        recorder.buffer.append(request(show, episode, address=f"198.18.{uuid.uuid4().int % 250}.{_ + 1}", at=at))
    await recorder.flush()
    await rollups_service.refresh_all(recorder.db)


async def pacing_at(db: Database, team: Team, campaign_id: str, now: datetime) -> CampaignPacingOut:
    async with db.tenant_transaction(team.tenant_id) as session:
        campaign = await service.get_campaign(session, uuid.UUID(campaign_id))
        return await pacing.campaign_pacing(session, campaign, now=now)


def pick(item: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    values = item if isinstance(item, dict) else item.model_dump(mode="json")
    return {field: values[field] for field in fields}


@dataclass
class Deals:
    """An active campaign flying a 20-day flight that is half over at midnight today (UTC), with one
    booking ahead, one on track, one behind, one that ended, one upcoming and one cancelled."""

    show: Show
    campaign_id: str
    ahead: str
    on_track: str
    behind: str
    ended: str
    upcoming: str
    cancelled: str
    today: date


async def make_deals(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> Deals:
    team, today = show.team, datetime.now(UTC).date()
    campaign = (await make_campaign(client, team, "active"))["id"]
    half_over = {
        "booked_impressions": 10,
        "flight_start": (today - timedelta(days=10)).isoformat(),
        "flight_end": (today + timedelta(days=9)).isoformat(),
    }

    async def book(episode: int, **fields: Any) -> str:
        booking = await make_booking(
            client, team, campaign, show.podcast_id, episode_id=show.episode_ids[episode], **fields
        )
        return str(booking["id"])

    ahead = await book(0, pricing_model="cpm", rate_minor=2500, **half_over)
    on_track = await book(1, pricing_model="flat", rate_minor=100_000, **half_over)
    behind = await book(2, pricing_model="cpm", rate_minor=3000, **half_over)
    ended = await book(
        3, pricing_model="cpm", rate_minor=4000, booked_impressions=2,
        flight_start=(today - timedelta(days=3)).isoformat(), flight_end=(today - timedelta(days=2)).isoformat(),
    )  # fmt: skip
    upcoming = await book(
        0, pricing_model="flat", rate_minor=50_000, booked_impressions=20,
        flight_start=(today + timedelta(days=1)).isoformat(), flight_end=(today + timedelta(days=5)).isoformat(),
    )  # fmt: skip
    cancelled = await book(1, pricing_model="cpm", rate_minor=9000, **{**half_over, "booked_impressions": 1000})
    patched = await client.patch(
        f"/v1/campaigns/{campaign}/bookings/{cancelled}", json={"status": "cancelled"}, headers=team.auth("sales")
    )
    assert patched.status_code == 200, patched.text
    yesterday = noon(today - timedelta(days=1))
    await download(recorder, show, 0, 6, yesterday)
    await download(recorder, show, 1, 5, yesterday)
    await download(recorder, show, 2, 4, yesterday)
    await download(recorder, show, 3, 3, noon(today - timedelta(days=2)))
    return Deals(show, campaign, ahead, on_track, behind, ended, upcoming, cancelled, today)


@pytest.fixture
async def deals(make_team, client: httpx.AsyncClient, owner_db: Database, recorder: Recorder) -> Deals:  # type: ignore[no-untyped-def]
    show = await make_show(client, await make_team("pro"), owner_db, episodes=4)
    return await make_deals(client, show, recorder)


async def test_pacing_at_an_instant_ahead_on_track_behind_ended_and_upcoming(deals: Deals, db: Database) -> None:
    # given the deals, at midnight today: the 20-day flights are exactly half over
    now = midnight(deals.today)
    # when the campaign's pacing is computed then
    out = await pacing_at(db, deals.show.team, deals.campaign_id, now)
    # then each live booking is paced against even delivery, the cancelled one left out
    by_id = {str(b.booking_id): b for b in out.bookings}
    assert [str(b.booking_id) for b in out.bookings] == [
        deals.ahead, deals.on_track, deals.behind, deals.ended, deals.upcoming
    ]  # fmt: skip
    assert deals.cancelled not in by_id
    half = {"phase": "in_flight", "elapsed": 0.5, "booked": 10, "expected_to_date": 5}
    assert pick(by_id[deals.ahead], NUMBERS) == {
        **half, "delivered": 6, "projected": 12, "pace": 1.2, "status": "ahead"
    }  # fmt: skip
    assert pick(by_id[deals.on_track], NUMBERS) == {
        **half, "delivered": 5, "projected": 10, "pace": 1.0, "status": "on_track"
    }  # fmt: skip
    assert pick(by_id[deals.behind], NUMBERS) == {
        **half, "delivered": 4, "projected": 8, "pace": 0.8, "status": "behind"
    }  # fmt: skip
    assert pick(by_id[deals.ended], NUMBERS) == {
        "phase": "ended", "elapsed": 1.0, "booked": 2, "delivered": 3, "expected_to_date": 2, "projected": 3,
        "pace": 1.5, "status": "ahead",
    }  # fmt: skip
    assert pick(by_id[deals.upcoming], NUMBERS) == {
        "phase": "upcoming", "elapsed": 0.0, "booked": 20, "delivered": 0, "expected_to_date": 0, "projected": 0,
        "pace": None, "status": "on_track",
    }  # fmt: skip
    # and spend: CPM on delivered impressions (capped at the booked ones), flat earned evenly over the flight
    names = {"ahead": deals.ahead, "on_track": deals.on_track, "behind": deals.behind, "ended": deals.ended,
             "upcoming": deals.upcoming}  # fmt: skip
    spend = {name: pick(by_id[booking_id], SPEND) for name, booking_id in names.items()}
    assert spend == {
        "ahead": {"currency": "USD", "spend_to_date": 0.15, "spend_to_date_minor": 15},  # 2500 × 6 / 1000
        "on_track": {"currency": "USD", "spend_to_date": 500.0, "spend_to_date_minor": 50_000},  # 100000 × 0.5
        "behind": {"currency": "USD", "spend_to_date": 0.12, "spend_to_date_minor": 12},  # 3000 × 4 / 1000
        "ended": {"currency": "USD", "spend_to_date": 0.08, "spend_to_date_minor": 8},  # 4000 × min(3, 2) / 1000
        "upcoming": {"currency": "USD", "spend_to_date": 0.0, "spend_to_date_minor": 0},
    }
    # and the campaign's totals are the sums, judged by the same thresholds
    assert out.as_of == now
    assert pick(out, ("booked", "delivered", "expected_to_date", "projected", "status", "currency")) == {
        "booked": 52, "delivered": 18, "expected_to_date": 17, "projected": 33, "status": "on_track", "currency": "USD"
    }  # fmt: skip
    assert out.pace == pytest.approx(18 / 17)
    assert (out.spend_to_date_minor, out.spend_to_date, out.mixed_currencies) == (50_035, 500.35, False)


async def test_pacing_route_end_to_end(deals: Deals, client: httpx.AsyncClient) -> None:
    # given the deals; when a viewer asks for the campaign's pacing now
    before = datetime.now(UTC)
    response = await client.get(f"/v1/campaigns/{deals.campaign_id}/pacing", headers=deals.show.team.auth("viewer"))
    after = datetime.now(UTC)
    # then it answers the same bookings and deliveries, paced at the instant it names
    assert response.status_code == 200, response.text
    body = response.json()
    as_of = datetime.fromisoformat(body["as_of"])
    assert before <= as_of <= after and body["campaign_id"] == deals.campaign_id
    by_id = {b["booking_id"]: b for b in body["bookings"]}
    assert list(by_id) == [deals.ahead, deals.on_track, deals.behind, deals.ended, deals.upcoming]
    flight_start = midnight(deals.today - timedelta(days=10))
    elapsed = (as_of - flight_start) / timedelta(days=20)  # between 0.5 and 0.55 all day: 5 expected of 10
    for booking_id, delivered, pace, status in (
        (deals.ahead, 6, 1.2, "ahead"), (deals.on_track, 5, 1.0, "on_track"), (deals.behind, 4, 0.8, "behind")
    ):  # fmt: skip
        booking = by_id[booking_id]
        assert booking["elapsed"] == pytest.approx(elapsed, abs=1e-9)
        assert pick(booking, ("phase", "booked", "delivered", "expected_to_date", "pace", "status")) == {
            "phase": "in_flight", "booked": 10, "delivered": delivered, "expected_to_date": 5, "pace": pace,
            "status": status,
        }  # fmt: skip
        assert booking["projected"] == math.floor(delivered / booking["elapsed"] + 0.5)
    flat = by_id[deals.on_track]
    assert abs(flat["spend_to_date_minor"] - 100_000 * flat["elapsed"]) <= 0.5 + 1e-6
    assert flat["spend_to_date"] == pytest.approx(1000 * flat["elapsed"])
    assert pick(by_id[deals.ended], ("phase", "delivered", "projected", "status")) == {
        "phase": "ended", "delivered": 3, "projected": 3, "status": "ahead"
    }  # fmt: skip
    assert pick(by_id[deals.upcoming], ("phase", "expected_to_date", "pace", "status")) == {
        "phase": "upcoming", "expected_to_date": 0, "pace": None, "status": "on_track"
    }  # fmt: skip
    assert pick(body, ("booked", "delivered", "expected_to_date", "currency", "mixed_currencies", "status")) == {
        "booked": 52, "delivered": 18, "expected_to_date": 17, "currency": "USD", "mixed_currencies": False,
        "status": "on_track",
    }  # fmt: skip


async def test_pacing_route_permissions_and_tenancy(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    # given a campaign of one tenant, another tenant, and an API key that may only ingest
    team: Team = await make_team()
    other: Team = await make_team()
    campaign = (await make_campaign(client, team))["id"]
    await make_booking(client, team, campaign, await make_podcast(client, team))
    key = (
        await client.post("/v1/api-keys", json={"name": "sdk", "scopes": ["ingest"]}, headers=team.auth("owner"))
    ).json()["key"]
    path = f"/v1/campaigns/{campaign}/pacing"
    # when each asks for the pacing; then every role reads it ...
    for role in ("viewer", "analyst", "sales"):
        answer = await client.get(path, headers=team.auth(role))
        assert answer.status_code == 200 and answer.json()["booked"] == 100_000, (role, answer.text)
    # ... the ingest key lacks campaigns:read ...
    refused = await client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 403 and refused.json()["permission"] == "campaigns:read", refused.text
    # ... and another tenant, or a missing campaign, is a 404
    assert (await client.get(path, headers=other.auth("owner"))).status_code == 404
    missing = await client.get(f"/v1/campaigns/{uuid.uuid4()}/pacing", headers=team.auth("owner"))
    assert missing.status_code == 404


async def test_elapsed_is_continuous_and_no_booking_is_behind_in_its_first_day(
    make_team, client: httpx.AsyncClient, db: Database
) -> None:  # type: ignore[no-untyped-def]
    # given a CPM booking of 100 impressions and a flat one of 1000.00 USD over March 1-10, nothing delivered
    team: Team = await make_team()
    podcast = await make_podcast(client, team)
    campaign = (await make_campaign(client, team))["id"]
    flight = {"flight_start": "2026-03-01", "flight_end": "2026-03-10"}
    cpm = (await make_booking(client, team, campaign, podcast, booked_impressions=100, **flight))["id"]
    flat = (
        await make_booking(
            client, team, campaign, podcast, placement="pre_roll", pricing_model="flat", rate_minor=100_000,
            booked_impressions=0, **flight,
        )
    )["id"]  # fmt: skip

    async def at(moment: str) -> tuple[dict[str, Any], dict[str, Any], CampaignPacingOut]:
        out = await pacing_at(db, team, campaign, datetime.fromisoformat(moment))
        by_id = {str(b.booking_id): b for b in out.bookings}
        return pick(by_id[cpm], NUMBERS), pick(by_id[flat], SPEND), out

    # when it is paced before the flight, twelve hours in, a day in, and after it
    before, flat_before, _ = await at("2026-02-28T12:00:00+00:00")
    half_day, flat_half_day, total_half_day = await at("2026-03-01T12:00:00+00:00")
    one_day, _, _ = await at("2026-03-02T00:00:00+00:00")
    after, flat_after, _ = await at("2026-03-11T00:00:00+00:00")
    # then before the flight it is upcoming and on track, with nothing spent
    assert before == {
        "phase": "upcoming", "elapsed": 0.0, "booked": 100, "delivered": 0, "expected_to_date": 0, "projected": 0,
        "pace": None, "status": "on_track",
    }  # fmt: skip
    assert flat_before == {"currency": "USD", "spend_to_date": 0.0, "spend_to_date_minor": 0}
    # twelve hours in, half a day of ten counts: 5 expected, 0 delivered, but too early to call it behind
    assert half_day == {
        "phase": "in_flight", "elapsed": 0.05, "booked": 100, "delivered": 0, "expected_to_date": 5,
        "projected": 0, "pace": 0.0, "status": "on_track",
    }  # fmt: skip
    assert flat_half_day == {"currency": "USD", "spend_to_date": 50.0, "spend_to_date_minor": 5000}
    # the campaign's totals apply the thresholds alone (no grace period there)
    assert (total_half_day.expected_to_date, total_half_day.status) == (5, "behind")
    # a full day in, it is behind; after the flight every booked impression was expected
    assert (one_day["elapsed"], one_day["expected_to_date"], one_day["status"]) == (0.1, 10, "behind")
    assert pick(after, ("phase", "elapsed", "expected_to_date", "projected", "status")) == {
        "phase": "ended", "elapsed": 1.0, "expected_to_date": 100, "projected": 0, "status": "behind"
    }  # fmt: skip
    assert flat_after == {"currency": "USD", "spend_to_date": 1000.0, "spend_to_date_minor": 100_000}


async def test_mixed_currencies_total_the_most_common_one(make_team, client: httpx.AsyncClient, db: Database) -> None:  # type: ignore[no-untyped-def]
    # given flat bookings of 100.00 and 250.00 USD and one of 5000 JPY (no minor unit), all ended
    team: Team = await make_team()
    podcast = await make_podcast(client, team)
    campaign = (await make_campaign(client, team))["id"]
    placements = iter(("pre_roll", "mid_roll", "post_roll"))
    for currency, rate in (("USD", 10_000), ("JPY", 5000), ("USD", 25_000)):
        await make_booking(
            client, team, campaign, podcast, placement=next(placements), pricing_model="flat", rate_minor=rate,
            currency=currency, booked_impressions=0,
        )  # fmt: skip
    # when the campaign is paced after the flights
    out = await pacing_at(db, team, campaign, datetime(2026, 4, 1, tzinfo=UTC))
    # then each booking's spend is in its own currency, and the totals only in the most common one
    assert sorted((b.currency, b.spend_to_date, b.spend_to_date_minor) for b in out.bookings) == [
        ("JPY", 5000.0, 5000), ("USD", 100.0, 10_000), ("USD", 250.0, 25_000)
    ]  # fmt: skip
    assert (out.currency, out.mixed_currencies, out.spend_to_date, out.spend_to_date_minor) == (
        "USD", True, 350.0, 35_000
    )  # fmt: skip


async def test_a_campaign_without_live_bookings(make_team, client: httpx.AsyncClient, db: Database) -> None:  # type: ignore[no-untyped-def]
    # given a campaign whose only booking is cancelled
    team: Team = await make_team()
    campaign = (await make_campaign(client, team))["id"]
    booking = await make_booking(client, team, campaign, await make_podcast(client, team), status="cancelled")
    assert booking["status"] == "cancelled"
    # when it is paced; then it has nothing to pace, and no currency
    out = await pacing_at(db, team, campaign, datetime(2026, 3, 15, tzinfo=UTC))
    assert (out.bookings, out.currency, out.booked, out.expected_to_date, out.pace, out.status) == (
        [], None, 0, 0, None, "on_track"
    )  # fmt: skip


async def test_delivery_by_day_sums_to_delivered(
    make_team, client: httpx.AsyncClient, owner_db: Database, db: Database, recorder: Recorder
) -> None:  # type: ignore[no-untyped-def]
    # given downloads of two episodes over four days
    show = await make_show(client, await make_team(), owner_db, episodes=2)
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in (3, 2, 1, 0)]
    await download(recorder, show, 1, 1, noon(days[0]))  # before every flight
    await download(recorder, show, 0, 2, noon(days[1]))
    await download(recorder, show, 0, 1, noon(days[2]))
    await download(recorder, show, 1, 1, noon(days[2]))
    await download(recorder, show, 0, 1, datetime.now(UTC))
    # and a run-of-show booking from two days ago, one of episode 1 from yesterday, one not started
    campaign = (await make_campaign(client, show.team))["id"]
    flight = {"flight_start": days[1].isoformat(), "flight_end": (today + timedelta(days=2)).isoformat()}
    whole_show = await make_booking(client, show.team, campaign, show.podcast_id, **flight)
    episode = await make_booking(
        client, show.team, campaign, show.podcast_id, episode_id=show.episode_ids[1], placement="pre_roll",
        flight_start=days[2].isoformat(), flight_end=today.isoformat(),
    )  # fmt: skip
    later = await make_booking(
        client, show.team, campaign, show.podcast_id, placement="post_roll",
        flight_start=(today + timedelta(days=1)).isoformat(), flight_end=(today + timedelta(days=3)).isoformat(),
    )  # fmt: skip
    # when the delivery is split by day
    async with db.tenant_transaction(show.team.tenant_id) as session:
        bookings = list(await session.scalars(select(Booking).where(Booking.campaign_id == uuid.UUID(campaign))))
        by_day = await pacing.delivery_by_day(session, bookings)
        delivered = await measurement.delivered_impressions(session, bookings)
    # then each booking has its downloads per day inside its flight, summing to its delivered impressions
    assert {str(k): v for k, v in by_day.items()} == {
        whole_show["id"]: {days[1]: 2, days[2]: 2, days[3]: 1},
        episode["id"]: {days[2]: 1},
        later["id"]: {},
    }
    assert {k: sum(v.values()) for k, v in by_day.items()} == delivered
    assert delivered[uuid.UUID(whole_show["id"])] == 5


async def behind_events(db: Database, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with db.tenant_transaction(tenant_id) as session:
        rows = await session.execute(
            text("SELECT payload FROM outbox_events WHERE event_type = 'booking.pacing_behind' ORDER BY created_at")
        )
        return [row.payload for row in rows]


async def flagged(db: Database, tenant_id: uuid.UUID) -> dict[str, datetime | None]:
    async with db.tenant_transaction(tenant_id) as session:
        return {str(b.id): b.pacing_behind_at for b in await session.scalars(select(Booking))}


async def test_check_pacing_announces_a_booking_behind_once(make_team, client: httpx.AsyncClient, db: Database) -> None:  # type: ignore[no-untyped-def]
    # given an active campaign with a booking half through its flight and nothing delivered, one with
    # nothing booked (on track), and a paused campaign with a booking just as far behind
    team: Team = await make_team()
    podcast = await make_podcast(client, team)
    sponsor = await make_sponsor(client, team)
    today = datetime.now(UTC).date()
    flight = {
        "flight_start": (today - timedelta(days=5)).isoformat(),
        "flight_end": (today + timedelta(days=4)).isoformat(),
    }
    active = (await make_campaign(client, team, "active", sponsor_id=sponsor))["id"]
    behind = await make_booking(client, team, active, podcast, booked_impressions=100, **flight)
    on_track = await make_booking(client, team, active, podcast, placement="pre_roll", booked_impressions=0, **flight)
    paused = (await make_campaign(client, team, "paused"))["id"]
    paused_booking = await make_booking(
        client, team, paused, podcast, placement="post_roll", booked_impressions=100, **flight
    )
    # when the periodic check runs twice
    first = await sponsorship_tasks.check_all_tenants(db)
    second = await sponsorship_tasks.check_all_tenants(db)
    # then the behind booking of the active campaign was announced once, and flagged
    assert (first, second) == (1, 0)
    events = await behind_events(db, team.tenant_id)
    assert len(events) == 1
    event = events[0]
    assert 50 <= event["expected_to_date"] <= 60 and event["pace"] == 0.0
    assert {k: v for k, v in event.items() if k not in ("expected_to_date", "pace")} == {
        "booking_id": behind["id"], "campaign_id": active, "sponsor_id": sponsor, "podcast_id": podcast,
        "episode_id": None, "booked": 100, "delivered": 0, "projected": 0, "flight_start": flight["flight_start"],
        "flight_end": flight["flight_end"],
    }  # fmt: skip
    marks = await flagged(db, team.tenant_id)
    assert marks[behind["id"]] is not None
    assert marks[on_track["id"]] is None and marks[paused_booking["id"]] is None
    # and once flagged it is never announced again, even at a later check
    later = datetime.now(UTC) + timedelta(days=2)
    async with db.tenant_transaction(team.tenant_id) as session:
        assert await pacing.check_pacing(session, team.tenant_id, now=later) == 0
    assert len(await behind_events(db, team.tenant_id)) == 1


async def test_two_workers_never_both_announce(make_team, client: httpx.AsyncClient, db: Database) -> None:  # type: ignore[no-untyped-def]
    # given an active campaign's booking that is behind
    team: Team = await make_team()
    today = datetime.now(UTC).date()
    campaign = (await make_campaign(client, team, "active"))["id"]
    await make_booking(
        client, team, campaign, await make_podcast(client, team), booked_impressions=100,
        flight_start=(today - timedelta(days=5)).isoformat(), flight_end=(today + timedelta(days=4)).isoformat(),
    )  # fmt: skip
    # when two workers check the tenant at the same time
    async with db.tenant_transaction(team.tenant_id) as first:
        announced_first = await pacing.check_pacing(first, team.tenant_id)
        async with db.tenant_transaction(team.tenant_id) as second:
            announced_second = await pacing.check_pacing(second, team.tenant_id)
    # then the second skips the booking the first holds, and a later check finds it flagged
    assert (announced_first, announced_second) == (1, 0)
    async with db.tenant_transaction(team.tenant_id) as third:
        assert await pacing.check_pacing(third, team.tenant_id) == 0
    assert len(await behind_events(db, team.tenant_id)) == 1
