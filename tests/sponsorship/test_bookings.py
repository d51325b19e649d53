"""IO bookings: validation (dates, flights inside the campaign, currency, amounts, make-goods), tenancy,
the inventory check, where a campaign runs, and what deleting does."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.sponsorship.schemas import ISO_4217_CODES
from tests.factories.catalog import make_episode, make_podcast
from tests.factories.identity import Team
from tests.factories.sponsorship import booking_body, make_booking, make_campaign

MARCH = {"start_date": "2026-03-01", "end_date": "2026-03-31"}


async def test_a_booking_is_created_echoed_and_audited(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team)
    episode_id = await make_episode(client, team, podcast_id)
    campaign = await make_campaign(client, team, **MARCH)
    body = booking_body(
        podcast_id, episode_id=episode_id, placement="pre_roll", ad_format="programmatic", pricing_model="flat",
        rate_minor=150_000, currency="EUR", booked_impressions=0, flight_start="2026-03-01",
        flight_end="2026-03-31", promo_code="  SPRING25 ", vanity_url="https://acme.example/show",
    )  # fmt: skip
    response = await client.post(f"/v1/campaigns/{campaign['id']}/bookings", json=body, headers=team.auth("sales"))
    assert response.status_code == 201, response.text
    booking = response.json()
    uuid.UUID(booking["id"])
    assert booking["campaign_id"] == campaign["id"]
    assert booking["status"] == "pending" and booking["warnings"] == [] and booking["make_good_of"] is None
    assert booking["promo_code"] == "SPRING25" and booking["vanity_url"] == "https://acme.example/show"
    for field in ("podcast_id", "episode_id", "placement", "ad_format", "pricing_model", "rate_minor", "currency",
                  "booked_impressions", "flight_start", "flight_end"):  # fmt: skip
        assert booking[field] == body[field], field
    fetched = await client.get(f"/v1/campaigns/{campaign['id']}/bookings/{booking['id']}", headers=team.auth("viewer"))
    assert fetched.status_code == 200 and fetched.json() == booking
    audit = await client.get(
        "/v1/audit-log", params={"entity_type": "booking", "entity_id": booking["id"]}, headers=team.auth("owner")
    )
    entries = audit.json()["items"]
    assert [e["action"] for e in entries] == ["create"]
    assert entries[0]["changes"]["rate_minor"] == {"before": None, "after": 150_000}
    # the same booking id under another campaign is not found
    other = await make_campaign(client, team)
    wrong = await client.get(f"/v1/campaigns/{other['id']}/bookings/{booking['id']}", headers=team.auth("viewer"))
    assert wrong.status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"flight_start": "2026-03-10", "flight_end": "2026-03-09"}, "flight"),  # ends before it starts
        ({"flight_start": "2026-02-28"}, "flight_start"),  # before the campaign
        ({"flight_end": "2026-04-01"}, "flight_end"),  # after the campaign
        ({"flight_start": "2026-02-30"}, "flight_start"),  # no such day
        ({"flight_start": "March 1st"}, "flight_start"),
        ({"flight_end": None}, "flight_end"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": "XYZ"}, "currency"),  # three letters, not ISO 4217
        ({"currency": "BGN"}, "currency"),  # withdrawn: Bulgaria uses the euro since 2026
        ({"currency": "HRK"}, "currency"),  # withdrawn in 2023
        ({"rate_minor": -1}, "rate_minor"),
        ({"rate_minor": 10**12 + 1}, "rate_minor"),
        ({"rate_minor": 12.5}, "rate_minor"),
        ({"booked_impressions": -100}, "booked_impressions"),
        ({"booked_impressions": 10**30}, "booked_impressions"),
        ({"placement": "in_roll"}, "placement"),
        ({"ad_format": "banner"}, "ad_format"),
        ({"pricing_model": "cpa"}, "pricing_model"),
        ({"status": "live"}, "status"),
        ({"vanity_url": "not a url"}, "vanity_url"),
        ({"promo_code": ""}, "promo_code"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_bookings_are_refused(
    change: dict[str, Any],
    field: str,
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team)
    campaign = await make_campaign(client, team, **MARCH)
    body = booking_body(podcast_id, **change)
    response = await client.post(f"/v1/campaigns/{campaign['id']}/bookings", json=body, headers=team.auth("sales"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text
    listed = await client.get(f"/v1/campaigns/{campaign['id']}/bookings", headers=team.auth("sales"))
    assert listed.json()["items"] == []


@pytest.mark.parametrize("currency", ["USD", "EUR", "JPY", "GBP", "XCG", "ZWG", "SLE", "VES", "CHF"])
async def test_current_iso_4217_codes_are_accepted(
    currency: str,
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team)
    campaign = await make_campaign(client, team)
    booking = await make_booking(client, team, campaign["id"], podcast_id, currency=currency)
    assert booking["currency"] == currency


def test_the_currency_list_is_iso_4217_list_one() -> None:
    assert len(ISO_4217_CODES) == 178
    assert all(len(code) == 3 and code.isalpha() and code.isupper() for code in ISO_4217_CODES)
    assert {"XCG", "ZWG", "XAD", "SLE", "VED", "MRU", "STN", "BYN"} <= ISO_4217_CODES
    assert not {"ANG", "BGN", "CUC", "HRK", "SLL", "ZWL", "MRO", "STD", "BYR", "VEF", "LTL"} & ISO_4217_CODES


async def test_a_campaign_without_dates_takes_any_flight_but_an_ordered_one(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team)
    open_ended = await make_campaign(client, team, start_date="2026-03-01")
    booking = await make_booking(
        client, team, open_ended["id"], podcast_id, flight_start="2026-03-01", flight_end="2030-12-31"
    )
    assert booking["flight_end"] == "2030-12-31"
    refused = await client.post(
        f"/v1/campaigns/{open_ended['id']}/bookings",
        json=booking_body(podcast_id, flight_start="2026-02-01", flight_end="2026-03-05"),
        headers=team.auth("sales"),
    )
    assert refused.status_code == 422 and refused.json()["field"] == "flight_start"
    # and a campaign's own dates must be in order
    backwards = await client.post(
        "/v1/campaigns", json={"name": "x", "start_date": "2026-03-02", "end_date": "2026-03-01"},
        headers=team.auth("sales"),
    )  # fmt: skip
    assert backwards.status_code == 422


async def test_other_tenants_podcasts_episodes_and_sponsors_are_not_found(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    mine: Team = await make_team()
    theirs: Team = await make_team()
    my_podcast = await make_podcast(client, mine)
    their_podcast = await make_podcast(client, theirs)
    their_episode = await make_episode(client, theirs, their_podcast)
    their_sponsor = (await client.post("/v1/sponsors", json={"name": "T"}, headers=theirs.auth("owner"))).json()["id"]
    campaign = await make_campaign(client, mine)
    path = f"/v1/campaigns/{campaign['id']}/bookings"
    cases = [
        (booking_body(their_podcast), "no such podcast"),
        (booking_body(str(uuid.uuid4())), "no such podcast"),
        (booking_body(my_podcast, episode_id=their_episode), "no such episode"),
        (booking_body(my_podcast, episode_id=str(uuid.uuid4())), "no such episode"),
        (booking_body(my_podcast, make_good_of=str(uuid.uuid4())), "no such booking"),
    ]
    for body, detail in cases:
        response = await client.post(path, json=body, headers=mine.auth("sales"))
        assert response.status_code == 404, response.text
        assert detail in response.json()["detail"]
    for body in ({"name": "x", "sponsor_id": their_sponsor}, {"name": "x", "sponsor_id": str(uuid.uuid4())}):
        response = await client.post("/v1/campaigns", json=body, headers=mine.auth("sales"))
        assert response.status_code == 404 and response.json()["detail"] == "no such sponsor"
    patched = await client.patch(
        f"/v1/campaigns/{campaign['id']}", json={"sponsor_id": their_sponsor}, headers=mine.auth("sales")
    )
    assert patched.status_code == 404
    # another tenant's campaign and its bookings answer 404 too
    their_campaign = await make_campaign(client, theirs)
    their_booking = await make_booking(client, theirs, their_campaign["id"], their_podcast)
    for method, url, body in (
        ("GET", f"/v1/campaigns/{their_campaign['id']}/bookings", None),
        ("POST", f"/v1/campaigns/{their_campaign['id']}/bookings", booking_body(my_podcast)),
        ("GET", f"/v1/campaigns/{their_campaign['id']}/bookings/{their_booking['id']}", None),
        ("PATCH", f"/v1/campaigns/{their_campaign['id']}/bookings/{their_booking['id']}", {"status": "cancelled"}),
        ("DELETE", f"/v1/campaigns/{their_campaign['id']}/bookings/{their_booking['id']}", None),
        ("GET", f"/v1/campaigns/{their_campaign['id']}/episodes", None),
    ):
        response = await client.request(method, url, json=body, headers=mine.auth("owner"))
        assert response.status_code == 404, (method, url, response.text)
    untouched = await client.get(
        f"/v1/campaigns/{their_campaign['id']}/bookings/{their_booking['id']}", headers=theirs.auth("viewer")
    )
    assert untouched.json()["status"] == "pending"


async def test_an_episode_must_belong_to_the_booked_podcast(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    first, second = await make_podcast(client, team, "First"), await make_podcast(client, team, "Second")
    episode_of_second = await make_episode(client, team, second)
    campaign = await make_campaign(client, team)
    path = f"/v1/campaigns/{campaign['id']}/bookings"
    refused = await client.post(
        path, json=booking_body(first, episode_id=episode_of_second), headers=team.auth("sales")
    )
    assert refused.status_code == 422 and refused.json()["field"] == "episode_id"
    booking = await make_booking(client, team, campaign["id"], second, episode_id=episode_of_second)
    # moving the booking to another podcast without its episode is refused too; with it, accepted
    url = f"{path}/{booking['id']}"
    moved = await client.patch(url, json={"podcast_id": first}, headers=team.auth("sales"))
    assert moved.status_code == 422 and moved.json()["field"] == "episode_id"
    moved = await client.patch(url, json={"podcast_id": first, "episode_id": None}, headers=team.auth("sales"))
    assert moved.status_code == 200 and (moved.json()["podcast_id"], moved.json()["episode_id"]) == (first, None)


async def test_make_goods_point_at_an_original_booking_of_the_same_campaign(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team)
    campaign = await make_campaign(client, team, **MARCH)
    other_campaign = await make_campaign(client, team, **MARCH)
    original = await make_booking(client, team, campaign["id"], podcast_id, status="delivered")
    elsewhere = await make_booking(client, team, other_campaign["id"], podcast_id, placement="post_roll")
    path = f"/v1/campaigns/{campaign['id']}/bookings"
    make_good = await make_booking(
        client, team, campaign["id"], podcast_id, placement="post_roll", pricing_model="flat", rate_minor=0,
        booked_impressions=20_000, flight_start="2026-03-25", make_good_of=original["id"],
    )  # fmt: skip
    assert make_good["make_good_of"] == original["id"]
    cases = [
        booking_body(podcast_id, make_good_of=elsewhere["id"]),  # another campaign's booking
        booking_body(podcast_id, make_good_of=make_good["id"]),  # a make-good of a make-good
    ]
    for body in cases:
        response = await client.post(path, json=body, headers=team.auth("sales"))
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "make_good_of"
    # through PATCH: not itself, not another campaign's, and an original cannot become a make-good
    for target, url in (
        (make_good["id"], f"{path}/{make_good['id']}"),
        (elsewhere["id"], f"{path}/{make_good['id']}"),
        (make_good["id"], f"{path}/{original['id']}"),
    ):
        response = await client.patch(url, json={"make_good_of": target}, headers=team.auth("sales"))
        assert response.status_code == 422, (target, url, response.text)
    # deleting the original (once cancelled) leaves the make-good as a booking of its own
    await client.patch(f"{path}/{original['id']}", json={"status": "cancelled"}, headers=team.auth("sales"))
    assert (await client.delete(f"{path}/{original['id']}", headers=team.auth("sales"))).status_code == 204
    left = (await client.get(f"{path}/{make_good['id']}", headers=team.auth("sales"))).json()
    assert left["make_good_of"] is None


async def test_inventory_overlaps_are_warned_not_refused(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team, "Busy Show")
    other_podcast = await make_podcast(client, team, "Quiet Show")
    first_episode = await make_episode(client, team, podcast_id, "One")
    second_episode = await make_episode(client, team, podcast_id, "Two")
    spring = await make_campaign(client, team, **MARCH)
    rival = await make_campaign(client, team)
    first = await make_booking(
        client, team, spring["id"], podcast_id, placement="mid_roll", flight_start="2026-03-01", flight_end="2026-03-15"
    )
    assert first["warnings"] == []
    # the same podcast's mid-roll over some of the same days, from another campaign: warned
    second = await make_booking(
        client, team, rival["id"], podcast_id, placement="mid_roll", flight_start="2026-03-10", flight_end="2026-04-10"
    )
    assert second["warnings"] == [
        {
            "code": "inventory_overlap",
            "detail": second["warnings"][0]["detail"],
            "booking_id": first["id"],
            "campaign_id": spring["id"],
            "overlap_start": "2026-03-10",
            "overlap_end": "2026-03-15",
        }
    ]
    assert "mid_roll" in second["warnings"][0]["detail"] and first["id"] in second["warnings"][0]["detail"]
    # the first booking now carries the warning too, when read or listed
    path = f"/v1/campaigns/{spring['id']}/bookings"
    fetched = (await client.get(f"{path}/{first['id']}", headers=team.auth("viewer"))).json()
    assert [w["booking_id"] for w in fetched["warnings"]] == [second["id"]]
    listed = (await client.get(path, headers=team.auth("viewer"))).json()["items"]
    assert [w["booking_id"] for w in listed[0]["warnings"]] == [second["id"]]
    # no overlap: another placement, another podcast, the next day, two different episodes
    quiet = [
        dict(placement="pre_roll", flight_start="2026-03-01", flight_end="2026-03-31"),
        dict(placement="mid_roll", flight_start="2026-04-11", flight_end="2026-04-30"),
    ]
    for fields in quiet:
        assert (await make_booking(client, team, rival["id"], podcast_id, **fields))["warnings"] == []
    assert (await make_booking(client, team, rival["id"], other_podcast, placement="mid_roll"))["warnings"] == []
    one = await make_booking(
        client, team, rival["id"], podcast_id, placement="post_roll", episode_id=first_episode,
        flight_start="2026-05-01", flight_end="2026-05-31",
    )  # fmt: skip
    two = await make_booking(
        client, team, rival["id"], podcast_id, placement="post_roll", episode_id=second_episode,
        flight_start="2026-05-01", flight_end="2026-05-31",
    )  # fmt: skip
    assert one["warnings"] == two["warnings"] == []
    # a booking of the whole podcast competes with the episode bookings
    whole = await make_booking(
        client, team, rival["id"], podcast_id, placement="post_roll",
        flight_start="2026-05-31", flight_end="2026-06-30",
    )  # fmt: skip
    assert sorted(w["booking_id"] for w in whole["warnings"]) == sorted([one["id"], two["id"]])
    # a cancelled booking holds no inventory, nor does a cancelled campaign's
    cancelled = await client.patch(
        f"/v1/campaigns/{rival['id']}/bookings/{second['id']}", json={"status": "cancelled"}, headers=team.auth("sales")
    )
    assert cancelled.status_code == 200 and cancelled.json()["warnings"] == []
    assert (await client.get(f"{path}/{first['id']}", headers=team.auth("viewer"))).json()["warnings"] == []
    reopened = await client.patch(
        f"/v1/campaigns/{rival['id']}/bookings/{second['id']}", json={"status": "confirmed"}, headers=team.auth("sales")
    )
    assert [w["booking_id"] for w in reopened.json()["warnings"]] == [first["id"]]
    moved = await client.post(
        f"/v1/campaigns/{rival['id']}/transition", json={"stage": "cancelled"}, headers=team.auth("sales")
    )
    assert moved.status_code == 200
    assert (await client.get(f"{path}/{first['id']}", headers=team.auth("viewer"))).json()["warnings"] == []


async def test_campaign_episodes_are_its_live_bookings(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    show = await make_podcast(client, team, "The Show")
    other = await make_podcast(client, team, "Other Show")
    episode_id = await make_episode(client, team, show, "Pilot")
    campaign = await make_campaign(client, team)
    whole = await make_booking(client, team, campaign["id"], other, placement="pre_roll")
    on_episode = await make_booking(client, team, campaign["id"], show, episode_id=episode_id)
    dropped = await make_booking(client, team, campaign["id"], show, placement="post_roll", status="cancelled")
    response = await client.get(f"/v1/campaigns/{campaign['id']}/episodes", headers=team.auth("viewer"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [
            {"booking_id": on_episode["id"], "podcast_id": show, "podcast_name": "The Show", "episode_id": episode_id,
             "episode_title": "Pilot", "placement": "mid_roll", "flight_start": "2026-03-01",
             "flight_end": "2026-03-31", "status": "pending"},
            {"booking_id": whole["id"], "podcast_id": other, "podcast_name": "Other Show", "episode_id": None,
             "episode_title": None, "placement": "pre_roll", "flight_start": "2026-03-01",
             "flight_end": "2026-03-31", "status": "pending"},
        ],
        "next_cursor": None,
    }  # fmt: skip
    assert dropped["id"] not in response.text
    paged = (
        await client.get(f"/v1/campaigns/{campaign['id']}/episodes", params={"limit": 1}, headers=team.auth("viewer"))
    ).json()
    assert len(paged["items"]) == 1 and paged["next_cursor"]
    # deleting the episode leaves the booking on its podcast; deleting a podcast takes its bookings
    assert (await client.delete(f"/v1/episodes/{episode_id}", headers=team.auth("owner"))).status_code == 204
    items = (await client.get(f"/v1/campaigns/{campaign['id']}/episodes", headers=team.auth("viewer"))).json()["items"]
    assert [(i["booking_id"], i["episode_id"]) for i in items] == [(on_episode["id"], None), (whole["id"], None)]
    assert (await client.delete(f"/v1/podcasts/{other}", headers=team.auth("owner"))).status_code == 204
    items = (await client.get(f"/v1/campaigns/{campaign['id']}/episodes", headers=team.auth("viewer"))).json()["items"]
    assert [i["booking_id"] for i in items] == [on_episode["id"]]


async def test_updates_are_checked_as_a_whole(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team)
    campaign = await make_campaign(client, team, **MARCH)
    booking = await make_booking(client, team, campaign["id"], podcast_id)
    url = f"/v1/campaigns/{campaign['id']}/bookings/{booking['id']}"
    for body in (
        {"flight_end": "2026-04-01"},
        {"flight_start": "2026-03-20", "flight_end": "2026-03-10"},
        {"flight_start": "31/03/2026"},
        {"currency": "EURO"},
        {"rate_minor": None},
        {"status": None},
        {"campaign_id": str(uuid.uuid4())},
    ):
        response = await client.patch(url, json=body, headers=team.auth("sales"))
        assert response.status_code == 422, (body, response.text)
    ok = await client.patch(
        url, json={"status": "confirmed", "rate_minor": 3000, "flight_start": "2026-03-05"}, headers=team.auth("sales")
    )
    assert ok.status_code == 200, ok.text
    assert (ok.json()["status"], ok.json()["rate_minor"], ok.json()["flight_start"]) == (
        "confirmed",
        3000,
        "2026-03-05",
    )
    # the campaign's dates cannot shrink past a live booking's flight
    for dates in ({"end_date": "2026-03-30"}, {"start_date": "2026-03-06"}, {"end_date": "2026-02-01"}):
        response = await client.patch(f"/v1/campaigns/{campaign['id']}", json=dates, headers=team.auth("sales"))
        assert response.status_code == 422, (dates, response.text)
    widened = await client.patch(
        f"/v1/campaigns/{campaign['id']}",
        json={"start_date": None, "end_date": "2026-06-30"},
        headers=team.auth("sales"),
    )
    assert widened.status_code == 200 and (widened.json()["start_date"], widened.json()["end_date"]) == (
        None,
        "2026-06-30",
    )
    audit = await client.get(
        "/v1/audit-log", params={"entity_id": booking["id"], "action": "update"}, headers=team.auth("owner")
    )
    changes = audit.json()["items"][0]["changes"]
    assert changes["rate_minor"] == {"before": 2500, "after": 3000}
    assert changes["status"] == {"before": "pending", "after": "confirmed"}


async def test_what_may_be_deleted(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
    db: Database,
) -> None:
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team)
    sponsor = (await client.post("/v1/sponsors", json={"name": "S"}, headers=team.auth("sales"))).json()["id"]
    draft = await make_campaign(client, team, sponsor_id=sponsor)
    running = await make_campaign(client, team, stage="active", sponsor_id=sponsor)
    confirmed = await make_booking(client, team, running["id"], podcast_id, status="confirmed")
    pending = await make_booking(client, team, running["id"], podcast_id, placement="pre_roll")
    await make_booking(client, team, draft["id"], podcast_id)
    # a running booking is cancelled, not deleted; a pending one goes
    url = f"/v1/campaigns/{running['id']}/bookings"
    refused = await client.delete(f"{url}/{confirmed['id']}", headers=team.auth("sales"))
    assert refused.status_code == 409 and "cancelled" in refused.json()["detail"]
    assert (await client.delete(f"{url}/{pending['id']}", headers=team.auth("sales"))).status_code == 204
    assert (await client.get(f"{url}/{pending['id']}", headers=team.auth("sales"))).status_code == 404
    # a sponsor with campaigns stays
    kept = await client.delete(f"/v1/sponsors/{sponsor}", headers=team.auth("sales"))
    assert kept.status_code == 409 and kept.json()["campaigns"] == 2
    # a campaign that went live stays; a draft goes with its bookings and history
    live = await client.delete(f"/v1/campaigns/{running['id']}", headers=team.auth("sales"))
    assert live.status_code == 409 and live.json()["stage"] == "active"
    assert (await client.delete(f"/v1/campaigns/{draft['id']}", headers=team.auth("sales"))).status_code == 204
    assert (await client.get(f"/v1/campaigns/{draft['id']}", headers=team.auth("sales"))).status_code == 404
    async with db.tenant_transaction(team.tenant_id) as session:
        left = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM bookings WHERE campaign_id = :c),"
                    " (SELECT count(*) FROM campaign_stage_changes WHERE campaign_id = :c)"
                ),
                {"c": draft["id"]},
            )
        ).one()
    assert tuple(left) == (0, 0)
    # a cancelled campaign takes no new bookings
    await client.post(
        f"/v1/campaigns/{running['id']}/transition", json={"stage": "cancelled"}, headers=team.auth("sales")
    )
    closed = await client.post(url, json=booking_body(podcast_id), headers=team.auth("sales"))
    assert closed.status_code == 409
    audit = await client.get("/v1/audit-log", params={"action": "delete"}, headers=team.auth("owner"))
    assert sorted(e["entity_type"] for e in audit.json()["items"]) == ["booking", "campaign"]


async def test_sponsor_crud(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    created = await client.post(
        "/v1/sponsors",
        json={"name": "  Acme Audio ", "website_url": "https://acme.example", "logo_url": "https://acme.example/l.png"},
        headers=team.auth("sales"),
    )
    assert created.status_code == 201, created.text
    sponsor = created.json()
    assert (sponsor["name"], sponsor["website_url"]) == ("Acme Audio", "https://acme.example/")
    url = f"/v1/sponsors/{sponsor['id']}"
    for body in ({"name": None}, {"name": ""}, {"logo_url": "ftp://x"}, {"tier": "gold"}):
        assert (await client.patch(url, json=body, headers=team.auth("sales"))).status_code == 422, body
    patched = await client.patch(url, json={"name": "Acme", "logo_url": None}, headers=team.auth("sales"))
    assert patched.status_code == 200 and (patched.json()["name"], patched.json()["logo_url"]) == ("Acme", None)
    assert (await client.get(url, headers=team.auth("viewer"))).json()["name"] == "Acme"
    assert (await client.delete(url, headers=team.auth("sales"))).status_code == 204
    assert (await client.get(url, headers=team.auth("viewer"))).status_code == 404
    audit = await client.get("/v1/audit-log", params={"entity_id": sponsor["id"]}, headers=team.auth("owner"))
    assert [e["action"] for e in audit.json()["items"]] == ["delete", "update", "create"]
