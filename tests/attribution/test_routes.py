"""Attribution through the routes, end to end: events ingested through the API, the five models
computed by hand for the same touches, windows, sponsors, ties, spend and the ratios."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories.catalog import make_episode, make_podcast
from tests.factories.identity import Team
from tests.factories.sponsorship import make_booking, make_campaign, make_sponsor

NOW = datetime.now(UTC).replace(microsecond=0)
CONV_AT = NOW - timedelta(hours=1)
DAY = timedelta(days=1)
HALF_LIFE = 7 * 86_400


def _at(delta: timedelta) -> str:
    return (CONV_AT + delta).isoformat()


@dataclass
class World:
    team: Team
    a: str  # sponsor S's campaign, with a flat and a CPM booking
    b: str  # sponsor S's other campaign, no bookings
    c: str  # a campaign without a sponsor
    podcast: str
    e1: str
    e2: str
    flat: str
    cpm: str


async def _post(client: httpx.AsyncClient, team: Team, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/events/attribution", json=events, headers=team.auth("owner"))
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == [], response.text


def touch(
    campaign: str, episode: str | None, listener: str, delta: timedelta, kind: str = "impression"
) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "campaign_id": campaign, "episode_id": episode, "listener_id": listener,
            "attribution_type": kind, "occurred_at": _at(delta)}  # fmt: skip


def conversion(
    campaign: str, listener: str, revenue: float, delta: timedelta = timedelta(0), **data: Any
) -> dict[str, Any]:
    return {"campaign_id": campaign, "listener_id": listener, "attribution_type": "conversion",
            "attribution_data": {"revenue": revenue, "currency": "USD", **data}, "occurred_at": _at(delta)}  # fmt: skip


@pytest.fixture
async def world(client: httpx.AsyncClient, make_team) -> World:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    sponsor = await make_sponsor(client, team, "Sponsor S")
    podcast = await make_podcast(client, team, "Attributed Show")
    e1 = await make_episode(client, team, podcast, "Episode one")
    e2 = await make_episode(client, team, podcast, "Episode two")
    a = (await make_campaign(client, team, "active", sponsor_id=sponsor, name="A"))["id"]
    b = (await make_campaign(client, team, "active", sponsor_id=sponsor, name="B"))["id"]
    c = (await make_campaign(client, team, "active", name="C"))["id"]
    flight = {"flight_start": (NOW - 20 * DAY).date().isoformat(), "flight_end": (NOW + 10 * DAY).date().isoformat()}
    flat = await make_booking(
        client, team, a, podcast, episode_id=e1, pricing_model="flat", rate_minor=100_000, **flight
    )
    cpm = await make_booking(client, team, a, podcast, placement="pre_roll", rate_minor=2500, **flight)
    await _post(client, team, [
        # L1 converts on B: A 10 days before, B 2 days before, A an hour before; none of the rest count.
        touch(a, e1, "l1", -10 * DAY),
        touch(b, e2, "l1", -2 * DAY, "click"),
        touch(a, e2, "l1", -timedelta(hours=1)),
        touch(a, e1, "l1", -40 * DAY),  # outside the 30-day lookback
        touch(c, e1, "l1", -DAY),  # another sponsor's campaign
        touch(a, e1, "l1", timedelta(hours=1) - timedelta(minutes=30)),  # after the conversion
        touch(a, e1, "l2-other-listener", -DAY),  # another listener
        conversion(b, "l1", 300),
        conversion(a, "l2", 50),  # no touch at all: unattributed
        touch(c, e2, "l3", -DAY),
        conversion(c, "l3", 20, timedelta(0)),
    ])  # fmt: skip
    return World(team, a, b, c, podcast, e1, e2, flat["id"], cpm["id"])


async def _get(client: httpx.AsyncClient, world: World, path: str, role: str = "viewer", **params: Any) -> Any:
    response = await client.get(path, params=params, headers=world.team.auth(role))
    assert response.status_code == 200, response.text
    return response.json()


def _decay_shares() -> tuple[float, float, float]:
    """Time-decay shares of the touches at 10 days, 2 days and 1 hour before the conversion."""
    weights = [2 ** (-(age - 3600) / HALF_LIFE) for age in (10 * 86_400, 2 * 86_400, 3600)]
    total = sum(weights)
    return weights[0] / total, weights[1] / total, weights[2] / total


async def test_five_models_by_hand(client: httpx.AsyncClient, world: World) -> None:
    compared = await _get(client, world, "/v1/attribution/compare", campaign_id=world.a)
    assert compared["campaign_id"] == world.a and compared["currency"] == "USD"
    models = {m["model"]: m for m in compared["models"]}
    assert list(models) == ["first_touch", "last_touch", "linear", "time_decay", "position_based"]
    d_old, d_mid, d_new = _decay_shares()
    expected_a = {
        "first_touch": 1.0, "last_touch": 1.0, "linear": 2 / 3, "time_decay": d_old + d_new, "position_based": 0.8,
    }  # fmt: skip
    for model, credit in expected_a.items():
        answer = models[model]
        assert math.isclose(answer["conversions"], credit, abs_tol=1e-9), model
        assert math.isclose(answer["revenue"], 300 * credit, abs_tol=1e-6), model
        # Spend: the flat fee (1,000.00) and nothing for the CPM booking, which delivered nothing.
        assert math.isclose(answer["spend"], 1000.0, abs_tol=1e-6)
        assert math.isclose(answer["roi"], (300 * credit - 1000) / 1000, abs_tol=1e-9)
        assert math.isclose(answer["roas"], 300 * credit / 1000, abs_tol=1e-9)
        assert math.isclose(answer["cpa"], 1000 / credit, rel_tol=1e-9)
        assert answer["unattributed_conversions"] == 1  # L2's conversion on A
        assert answer["lookback_days"] == 30
        # By day: the spend spread over the flight, the conversion on its day.
        assert math.isclose(sum(d["spend"] for d in answer["days"]), 1000.0, abs_tol=1e-6)
        assert math.isclose(sum(d["conversions"] for d in answer["days"]), credit, abs_tol=1e-9)
        day = next(d for d in answer["days"] if d["day"] == CONV_AT.date().isoformat())
        assert math.isclose(day["conversions"], credit, abs_tol=1e-9)
    # Booking and episode roll-ups: the touch at 10 days (episode one) falls to the flat booking on
    # that episode, the touch an hour before (episode two) to the run-of-show CPM booking.
    linear = models["linear"]
    bookings = {b["booking_id"]: b for b in linear["bookings"]}
    assert math.isclose(bookings[world.flat]["conversions"], 1 / 3) and bookings[world.flat]["spend"] == 1000.0
    assert math.isclose(bookings[world.cpm]["conversions"], 1 / 3) and bookings[world.cpm]["spend"] == 0.0
    assert bookings[world.cpm]["roi"] is None and bookings[world.cpm]["cpa"] == 0.0
    episodes = {e["episode_id"]: e for e in linear["episodes"]}
    assert math.isclose(episodes[world.e1]["conversions"], 1 / 3) and episodes[world.e1]["title"] == "Episode one"
    assert [p["name"] for p in linear["podcasts"]] == ["Attributed Show"]
    assert math.isclose(linear["podcasts"][0]["revenue"], 200.0)

    # B: its click is the middle touch; no bookings, so no spend and every ratio null.
    b = {m["model"]: m for m in (await _get(client, world, "/v1/attribution/compare", campaign_id=world.b))["models"]}
    expected_b = {"first_touch": 0.0, "last_touch": 0.0, "linear": 1 / 3, "time_decay": d_mid, "position_based": 0.2}
    for model, credit in expected_b.items():
        assert math.isclose(b[model]["conversions"], credit, abs_tol=1e-9), model
        assert b[model]["spend"] == 0 and b[model]["roi"] is None and b[model]["roas"] is None
        assert b[model]["unattributed_conversions"] == 0
    assert b["first_touch"]["cpa"] is None  # no conversions, no spend: null, never an error

    # C has no sponsor: only its own touches count, so all of L3's conversion is its own.
    c = {m["model"]: m for m in (await _get(client, world, "/v1/attribution/compare", campaign_id=world.c))["models"]}
    assert all(math.isclose(c[m]["conversions"], 1.0) and math.isclose(c[m]["revenue"], 20.0) for m in c)

    # Credits of one conversion sum to 1 across the campaigns it credited.
    for model in expected_a:
        assert math.isclose(models[model]["conversions"] + b[model]["conversions"], 1.0, abs_tol=1e-9)


async def test_one_model_lookbacks_and_ranges(client: httpx.AsyncClient, world: World) -> None:
    path = f"/v1/campaigns/{world.a}/attribution"
    default = await _get(client, world, path)
    assert default["model"] == "last_touch" and math.isclose(default["conversions"], 1.0)
    # A lookback of one day per request keeps only the touch an hour before: all of it to A.
    short = await _get(client, world, path, model="linear", lookback_days=1)
    assert math.isclose(short["conversions"], 1.0) and short["lookback_days"] == 1
    # The lookback of the conversion's campaign (B) applies: 5 days drops the touch at 10 days.
    patched = await client.patch(
        f"/v1/campaigns/{world.b}", json={"lookback_days": 5}, headers=world.team.auth("sales")
    )
    assert patched.status_code == 200 and patched.json()["lookback_days"] == 5
    five = await _get(client, world, path, model="linear")
    assert math.isclose(five["conversions"], 0.5)
    # Conversions outside from/to are not counted; the spend is the range's share of the flat fee.
    day = CONV_AT.date()
    before = await _get(client, world, path, **{"from": (day - 3 * DAY).isoformat(), "to": (day - DAY).isoformat()})
    assert before["conversions"] == 0 and before["from"] == (day - 3 * DAY).isoformat()
    flight_days = 31
    assert math.isclose(before["spend"], 1000 * 3 / flight_days, rel_tol=1e-9)
    assert before["roi"] == -1.0 and before["cpa"] is None


async def test_ties_in_time_follow_the_event_id(client: httpx.AsyncClient, world: World) -> None:
    first, second = sorted([uuid.uuid4(), uuid.uuid4()])
    same = -3 * DAY
    events = [touch(world.a, world.e1, "tie", same), touch(world.b, world.e1, "tie", same)]
    events[0]["id"], events[1]["id"] = str(second), str(first)  # B's touch has the smaller id
    await _post(client, world.team, [*events, conversion(world.c, "other", 1), conversion(world.a, "tie", 10)])
    b = await _get(client, world, f"/v1/campaigns/{world.b}/attribution", model="first_touch")
    a = await _get(client, world, f"/v1/campaigns/{world.a}/attribution", model="last_touch")
    # The tie: B's touch (smaller id) is first, A's is last.
    assert math.isclose(b["conversions"], 1.0) and math.isclose(b["revenue"], 10.0)
    assert math.isclose(a["conversions"], 2.0)  # L1's conversion and this one


async def test_bad_input_and_access(client: httpx.AsyncClient, world: World, make_team) -> None:  # type: ignore[no-untyped-def]
    headers = world.team.auth("viewer")
    for params in ({"model": "u_shaped"}, {"lookback_days": 0}, {"lookback_days": 366}, {"half_life_days": 0},
                   {"from": "yesterday"}, {"from": "2026-05-02", "to": "2026-05-01"}):  # fmt: skip
        response = await client.get(f"/v1/campaigns/{world.a}/attribution", params=params, headers=headers)
        assert response.status_code in (400, 422), (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    missing = await client.get("/v1/attribution/compare", headers=headers)
    assert missing.status_code == 422
    other: Team = await make_team()
    hidden = await client.get(f"/v1/campaigns/{world.a}/attribution", headers=other.auth("owner"))
    assert hidden.status_code == 404
    hidden = await client.get("/v1/attribution/compare", params={"campaign_id": world.a}, headers=other.auth("owner"))
    assert hidden.status_code == 404
    assert (await client.get(f"/v1/campaigns/{world.a}/attribution")).status_code == 401
    # Other tenants' events never count, even for the same listener ids.
    assert (
        await client.get(f"/v1/campaigns/{world.a}/attribution", headers=world.team.auth("sales"))
    ).status_code == 200
