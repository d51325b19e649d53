"""Sponsor–podcast matching through the route: every component computed by hand for a small world,
the ranking, similar sponsors, smoothing, inventory, podcasts without data, access and validation."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.rollups import service as rollups
from tests.factories.catalog import make_episode, make_podcast
from tests.factories.events import listener_event
from tests.factories.identity import Team
from tests.factories.sponsorship import make_booking, make_campaign, make_sponsor

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
TOMORROW = TODAY + timedelta(days=1)
DAY = timedelta(days=1)
WEIGHTS = {"audience": 0.35, "listen_through": 0.20, "conversion_rate": 0.30, "inventory": 0.15}
PRIOR = 200
CHUNK = 150  # events per request: the test app takes bodies of at most 64 kB


@dataclass
class World:
    team: Team
    sponsor: str  # S, whose matches are asked for
    similar: str  # T: booked on Alpha (as S is) and Beta, so Jaccard(S, T) = 1/2
    alpha: str
    beta: str
    gamma: str  # no data at all
    delta: str  # no data at all


def _day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


def _touch(campaign: str, episode: str, listener: str, at: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "campaign_id": campaign, "episode_id": episode, "listener_id": listener,
            "attribution_type": "impression", "occurred_at": at.isoformat()}  # fmt: skip


def _conversion(campaign: str, listener: str, at: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "campaign_id": campaign, "listener_id": listener, "attribution_type": "conversion",
            "attribution_data": {"revenue": 10, "currency": "USD"}, "occurred_at": at.isoformat()}  # fmt: skip


def _journeys(campaign: str, episode: str, prefix: str, touches: int, conversions: int) -> list[dict[str, Any]]:
    """``touches`` listeners with one touch each 10 days ago; the first ``conversions`` convert an hour later
    (one touch per conversion: its whole linear credit goes to that touch)."""
    events = []
    for n in range(touches):
        at = NOW - 10 * DAY + timedelta(seconds=n)
        events.append(_touch(campaign, episode, f"{prefix}{n}", at))
        if n < conversions:
            events.append(_conversion(campaign, f"{prefix}{n}", at + timedelta(hours=1)))
    return events


async def _post(client: httpx.AsyncClient, team: Team, kind: str, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), CHUNK):
        response = await client.post(
            f"/v1/events/{kind}", json=events[start : start + CHUNK], headers=team.auth("owner")
        )
        assert response.status_code == 200, response.text
        assert response.json()["rejected"] == [], response.text


async def _downloads(owner_db: Database, tenant_id: uuid.UUID, rows: list[tuple[date, str, int]]) -> None:
    # Downloads come from prefix requests counted by the measurement rollup; here the rollup rows
    # themselves are written directly, as the superuser-owned owner database (no RLS), which is all
    # matching reads.
    async with owner_db.transaction() as session:
        for day, episode, downloads in rows:
            await session.execute(
                text(
                    "INSERT INTO download_daily (tenant_id, day, episode_id, country, app, device, device_category, "
                    "downloads) VALUES (:t, :day, :e, 'US', 'Apple Podcasts', 'iPhone', 'mobile', :n)"
                ),
                {"t": tenant_id, "day": day, "e": uuid.UUID(episode), "n": downloads},
            )


async def _refresh_rollups(db: Database, tenant_id: uuid.UUID) -> None:
    async with db.tenant_transaction(tenant_id) as session:
        await rollups.refresh(session, tenant_id)


async def _matches(client: httpx.AsyncClient, team: Team, sponsor: str, role: str = "viewer", **params: Any) -> Any:
    response = await client.get(f"/v1/sponsors/{sponsor}/matches", params=params, headers=team.auth(role))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def world(client: httpx.AsyncClient, make_team, db: Database, owner_db: Database) -> World:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    s, t, u = [await make_sponsor(client, team, name) for name in ("Sponsor S", "Sponsor T", "Sponsor U")]
    alpha, beta, gamma, delta = [await make_podcast(client, team, n) for n in ("Alpha", "Beta", "Gamma", "Delta")]
    e_alpha, e_beta = await make_episode(client, team, alpha), await make_episode(client, team, beta)
    await make_episode(client, team, gamma)
    cs = (await make_campaign(client, team, "active", sponsor_id=s, name="S spring"))["id"]
    ct = (await make_campaign(client, team, "active", sponsor_id=t, name="T spring"))["id"]
    cu = (await make_campaign(client, team, "active", sponsor_id=u, name="U spring"))["id"]
    cc = (await make_campaign(client, team, "active", name="No sponsor"))["id"]
    cx = (await make_campaign(client, team, "active", name="Called off"))["id"]

    past = {"flight_start": _day(-60), "flight_end": _day(-31)}
    coming = {"flight_start": _day(0), "flight_end": _day(60)}
    # Booked podcasts: S {Alpha}, T {Alpha, Beta}; U's only booking is cancelled, so U is similar to no one.
    await make_booking(client, team, cs, alpha, placement="mid_roll", **past)
    await make_booking(client, team, ct, alpha, placement="post_roll", **past)
    await make_booking(client, team, cu, alpha, placement="pre_roll", status="cancelled", **coming)
    # Beta's coming weeks: mid_roll from tomorrow for 14 days, and (episode-specific, overlapping 7 of
    # them) days 8..21: 21 days; pre_roll from 5 days ago to tomorrow + 2: 3 days. 24 of 84 slots taken.
    await make_booking(client, team, ct, beta, placement="mid_roll", flight_start=_day(1), flight_end=_day(14))
    await make_booking(
        client, team, ct, beta, placement="mid_roll", episode_id=e_beta, flight_start=_day(8), flight_end=_day(21)
    )
    await make_booking(client, team, ct, beta, placement="pre_roll", flight_start=_day(-5), flight_end=_day(3))
    # A live booking of a campaign cancelled afterwards holds nothing.
    await make_booking(client, team, cx, alpha, placement="post_roll", **coming)
    moved = await client.post(f"/v1/campaigns/{cx}/transition", json={"stage": "cancelled"}, headers=team.auth("sales"))
    assert moved.status_code == 200, moved.text

    await _post(client, team, "attribution", [
        *_journeys(cs, e_alpha, "s", 300, 90),  # S on Alpha: 90 conversions from 300 touches
        *_journeys(ct, e_beta, "t", 4, 4),  # T on Beta: 4 of 4, a raw rate of 1 on very little evidence
        *_journeys(cu, e_beta, "u", 1, 1),  # U is not similar to S: only the tenant-wide rate sees this
        *_journeys(cc, e_alpha, "c", 100, 0),  # a campaign without sponsor: 100 touches, nothing
        # S's journey of 200 days ago is outside the 180 days.
        _touch(cs, e_alpha, "old", NOW - 200 * DAY),
        _conversion(cs, "old", NOW - 200 * DAY + timedelta(hours=1)),
    ])  # fmt: skip

    three_days_ago = (NOW - 3 * DAY).isoformat()
    listens = [
        *(listener_event(e_alpha, event_type="play", occurred_at=three_days_ago) for _ in range(4)),
        *(listener_event(e_alpha, event_type="complete", occurred_at=three_days_ago) for _ in range(3)),
        *(listener_event(e_beta, event_type="play", occurred_at=three_days_ago) for _ in range(5)),
        listener_event(e_beta, event_type="complete", occurred_at=three_days_ago),
        # 100 days ago: outside the 90 days of listen-through.
        *(listener_event(e_beta, event_type="complete", occurred_at=(NOW - 100 * DAY).isoformat()) for _ in range(9)),
    ]
    await _post(client, team, "listener", listens)
    await _refresh_rollups(db, team.tenant_id)
    await _downloads(owner_db, team.tenant_id, [
        (TODAY - DAY, e_alpha, 60), (TODAY - 20 * DAY, e_alpha, 40),
        (TODAY - 40 * DAY, e_alpha, 500),  # outside the 30 days
        (TODAY, e_beta, 9),
    ])  # fmt: skip
    return World(team, s, t, alpha, beta, gamma, delta)


async def test_components_and_ranking_by_hand(client: httpx.AsyncClient, world: World) -> None:
    answer = await _matches(client, world.team, world.sponsor)
    assert answer["sponsor_id"] == world.sponsor and answer["weights"] == WEIGHTS
    assert answer["inventory_from"] == TOMORROW.isoformat()
    assert answer["inventory_to"] == (TODAY + 28 * DAY).isoformat()
    assert answer["podcasts"] == 4 and answer["prior_touchpoints"] == PRIOR
    assert [(s["sponsor_id"], s["similarity"], s["shared_podcasts"]) for s in answer["similar_sponsors"]] == [
        (world.similar, 0.5, 1)
    ]
    items = {item["name"]: item for item in answer["items"]}

    # audience: log1p(downloads of 30 days) / log1p(the most of any podcast)
    alpha, beta = items["Alpha"]["components"], items["Beta"]["components"]
    assert alpha["audience"]["downloads_30d"] == 100 and alpha["audience"]["value"] == 100
    assert alpha["audience"]["score"] == 1.0
    assert beta["audience"]["downloads_30d"] == 9
    assert math.isclose(beta["audience"]["score"], math.log(10) / math.log(101))

    # listen-through: completes / plays of 90 days
    assert (alpha["listen_through"]["plays_90d"], alpha["listen_through"]["completes_90d"]) == (4, 3)
    assert alpha["listen_through"]["value"] == 0.75 and alpha["listen_through"]["score"] == 0.75
    assert (beta["listen_through"]["plays_90d"], beta["listen_through"]["completes_90d"]) == (5, 1)
    assert math.isclose(beta["listen_through"]["score"], 0.2)

    # conversion rate: the tenant's 95 conversions over 405 touchpoints are the prior (weight 200)
    tenant_rate = 95 / 405
    assert math.isclose(answer["tenant_conversion_rate"], tenant_rate)
    alpha_rate = (90 + PRIOR * tenant_rate) / (300 + PRIOR)
    # Beta: S never ran there; T's 4 of 4 count at similarity 1/2, U's conversion not at all.
    beta_rate = (0.5 * 4 + PRIOR * tenant_rate) / (0.5 * 4 + PRIOR)
    conversion = alpha["conversion_rate"]
    assert (conversion["own_conversions"], conversion["own_touchpoints"]) == (90, 300)
    assert (conversion["similar_conversions"], conversion["similar_touchpoints"]) == (0, 0)
    assert math.isclose(conversion["raw_rate"], 0.3) and math.isclose(conversion["value"], alpha_rate)
    conversion = beta["conversion_rate"]
    assert (conversion["own_conversions"], conversion["own_touchpoints"]) == (0, 0)
    assert (conversion["similar_conversions"], conversion["similar_touchpoints"]) == (2.0, 2.0)
    assert conversion["raw_rate"] == 1.0 and math.isclose(conversion["value"], beta_rate)
    # Beta's raw rate of 1 on two weighted touches does not beat Alpha's 0.3 on 300: smoothing.
    assert alpha_rate > beta_rate
    assert alpha["conversion_rate"]["score"] == 1.0
    assert math.isclose(beta["conversion_rate"]["score"], beta_rate / alpha_rate)

    # inventory over 4 weeks: Alpha's bookings in the coming weeks are cancelled or of a cancelled
    # campaign; Beta has 24 of its 3 × 28 slots taken.
    assert alpha["inventory"] == {"value": 1.0, "score": 1.0, "free_slots": 84, "total_slots": 84}
    assert beta["inventory"]["free_slots"] == 60 and math.isclose(beta["inventory"]["score"], 60 / 84)

    expected = {
        "Alpha": 0.35 * 1 + 0.20 * 0.75 + 0.30 * 1 + 0.15 * 1,
        "Beta": 0.35 * math.log(10) / math.log(101) + 0.20 * 0.2 + 0.30 * beta_rate / alpha_rate + 0.15 * 60 / 84,
        "Gamma": 0.15,
        "Delta": 0.15,
    }
    for name, score in expected.items():
        assert math.isclose(items[name]["score"], score), name
    # Best first; Gamma and Delta tie and go by name.
    assert [item["name"] for item in answer["items"]] == ["Alpha", "Beta", "Delta", "Gamma"]
    assert [item["podcast_id"] for item in answer["items"][:2]] == [world.alpha, world.beta]

    top = await _matches(client, world.team, world.sponsor, role="sales", limit=2)
    assert [item["name"] for item in top["items"]] == ["Alpha", "Beta"] and top["podcasts"] == 4


async def test_podcasts_without_data_score_zero_but_are_listed(client: httpx.AsyncClient, world: World) -> None:
    answer = await _matches(client, world.team, world.sponsor)
    for name in ("Gamma", "Delta"):
        item = next(i for i in answer["items"] if i["name"] == name)
        components = item["components"]
        assert components["audience"] == {"value": 0.0, "score": 0.0, "downloads_30d": 0}
        assert components["listen_through"] == {"value": None, "score": 0.0, "plays_90d": 0, "completes_90d": 0}
        assert components["conversion_rate"]["value"] is None and components["conversion_rate"]["score"] == 0.0
        assert components["conversion_rate"]["raw_rate"] is None
        assert components["inventory"]["score"] == 1.0


async def test_similar_sponsors_conversions_help_where_the_sponsor_never_ran(
    client: httpx.AsyncClient, world: World
) -> None:
    # Given T's conversions on Beta, where S never ran: Beta scores on conversions for S ...
    beta = next(i for i in (await _matches(client, world.team, world.sponsor))["items"] if i["name"] == "Beta")
    assert beta["components"]["conversion_rate"]["own_touchpoints"] == 0
    assert beta["components"]["conversion_rate"]["score"] > 0.8
    # ... and for T itself, S (similarity 1/2) lends its Alpha record, T having none of its own there.
    for_t = await _matches(client, world.team, world.similar)
    assert [s["sponsor_id"] for s in for_t["similar_sponsors"]] == [world.sponsor]
    alpha = next(i for i in for_t["items"] if i["name"] == "Alpha")["components"]["conversion_rate"]
    assert (alpha["own_touchpoints"], alpha["similar_touchpoints"], alpha["similar_conversions"]) == (0, 150, 45)


async def test_a_sponsor_without_bookings_has_no_similar_sponsors(client: httpx.AsyncClient, world: World) -> None:
    lone = await make_sponsor(client, world.team, "Lone")
    answer = await _matches(client, world.team, lone)
    assert answer["similar_sponsors"] == []
    # Nobody's evidence is its own or similar: no conversion component anywhere, the rest unchanged.
    assert all(item["components"]["conversion_rate"]["score"] == 0 for item in answer["items"])
    assert [item["name"] for item in answer["items"]][:2] == ["Alpha", "Beta"]


async def test_inventory_falls_when_a_booking_takes_the_coming_weeks(client: httpx.AsyncClient, make_team) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    sponsor = await make_sponsor(client, team)
    podcast = await make_podcast(client, team, "Open")
    campaign = (await make_campaign(client, team, "active", sponsor_id=sponsor))["id"]

    def inventory(answer: Any) -> dict[str, Any]:
        return answer["items"][0]["components"]["inventory"]  # type: ignore[no-any-return]

    assert inventory(await _matches(client, team, sponsor, weeks=1)) == {
        "value": 1.0, "score": 1.0, "free_slots": 21, "total_slots": 21,
    }  # fmt: skip
    # A mid-roll for the first three days, then a pre-roll running past the window's end.
    await make_booking(client, team, campaign, podcast, placement="mid_roll", flight_start=_day(1), flight_end=_day(3))
    assert inventory(await _matches(client, team, sponsor, weeks=1))["free_slots"] == 18
    await make_booking(
        client, team, campaign, podcast, placement="pre_roll", flight_start=_day(-2), flight_end=_day(90)
    )
    week = inventory(await _matches(client, team, sponsor, weeks=1))
    assert week["free_slots"] == 11 and math.isclose(week["score"], 11 / 21)
    # Over 26 weeks (182 days): pre_roll days 1..90 and mid_roll days 1..3 are taken.
    half_year = inventory(await _matches(client, team, sponsor, weeks=26))
    assert half_year["total_slots"] == 3 * 182 and half_year["free_slots"] == 3 * 182 - 93
    # Only inventory counts for this podcast: the score is its weighted share.
    answer = await _matches(client, team, sponsor, weeks=1)
    assert math.isclose(answer["items"][0]["score"], 0.15 * 11 / 21)


async def test_a_tenant_without_podcasts_answers_no_items(client: httpx.AsyncClient, make_team) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    sponsor = await make_sponsor(client, team)
    answer = await _matches(client, team, sponsor)
    assert answer["items"] == [] and answer["podcasts"] == 0 and answer["tenant_conversion_rate"] == 0


async def test_access_and_validation(client: httpx.AsyncClient, world: World, make_team) -> None:  # type: ignore[no-untyped-def]
    path = f"/v1/sponsors/{world.sponsor}/matches"
    other: Team = await make_team()
    for team, target in ((other, path), (world.team, f"/v1/sponsors/{uuid.uuid4()}/matches")):
        response = await client.get(target, headers=team.auth("owner"))
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(path)).status_code == 401
    for params in ({"limit": 0}, {"limit": 101}, {"weeks": 0}, {"weeks": 27}, {"weeks": "two"}):
        response = await client.get(path, params=params, headers=world.team.auth("viewer"))
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["errors"], params
    bad_id = await client.get("/v1/sponsors/not-a-uuid/matches", headers=world.team.auth("viewer"))
    assert bad_id.status_code == 422
