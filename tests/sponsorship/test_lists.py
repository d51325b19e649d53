"""Sponsor, campaign and booking lists: filters, the `from`/`to` overlap rule, and cursor pagination."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.factories.catalog import make_podcast
from tests.factories.identity import Team
from tests.factories.sponsorship import make_booking, make_campaign, make_sponsor


async def all_pages(
    client: httpx.AsyncClient, team: Team, path: str, params: dict[str, Any], limit: int
) -> list[list[str]]:
    """The ids of each page, following ``next_cursor`` to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=team.auth("viewer"))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def campaign_ids(client: httpx.AsyncClient, team: Team, **params: Any) -> list[str]:
    response = await client.get("/v1/campaigns", params={"limit": 500, **params}, headers=team.auth("analyst"))
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["items"]]


async def test_sponsors_page_newest_first_and_search_by_name(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    created = [await make_sponsor(client, team, name) for name in ("Acme", "Beta Labs", "acme two", "Gamma", "Delta")]
    pages = await all_pages(client, team, "/v1/sponsors", {}, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == list(reversed(created))
    found = (await client.get("/v1/sponsors", params={"q": "ACME"}, headers=team.auth("viewer"))).json()["items"]
    assert [s["name"] for s in found] == ["acme two", "Acme"]
    wildcard = (await client.get("/v1/sponsors", params={"q": "%"}, headers=team.auth("viewer"))).json()["items"]
    assert wildcard == []
    bad = await client.get("/v1/sponsors", params={"cursor": "not-a-cursor"}, headers=team.auth("viewer"))
    assert bad.status_code == 422
    assert (await client.get("/v1/sponsors", params={"limit": 0}, headers=team.auth("viewer"))).status_code == 422


async def test_campaigns_filter_by_stage_sponsor_and_podcast(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    acme, beta = await make_sponsor(client, team, "Acme"), await make_sponsor(client, team, "Beta")
    show, other_show = await make_podcast(client, team, "Show"), await make_podcast(client, team, "Other")
    by_stage = {
        stage: (await make_campaign(client, team, stage=stage, sponsor_id=acme if n % 2 else beta))["id"]
        for n, stage in enumerate(("draft", "active", "paused", "completed", "cancelled"))
    }
    unsponsored = (await make_campaign(client, team, stage="active"))["id"]
    for stage, campaign_id in by_stage.items():
        expected = [unsponsored, campaign_id] if stage == "active" else [campaign_id]
        assert sorted(await campaign_ids(client, team, stage=stage)) == sorted(expected)
    assert await campaign_ids(client, team, sponsor_id=acme) == [by_stage["completed"], by_stage["active"]]
    assert await campaign_ids(client, team, sponsor_id=beta, stage="draft") == [by_stage["draft"]]
    assert await campaign_ids(client, team, sponsor_id=str(uuid.uuid4())) == []
    # a podcast filter keeps campaigns with a live booking on it
    await make_booking(client, team, by_stage["active"], show)
    await make_booking(client, team, by_stage["paused"], other_show)
    await make_booking(client, team, by_stage["draft"], show, status="cancelled")
    assert await campaign_ids(client, team, podcast_id=show) == [by_stage["active"]]
    assert await campaign_ids(client, team, podcast_id=other_show, stage="paused") == [by_stage["paused"]]
    assert await campaign_ids(client, team, podcast_id=other_show, stage="active") == []
    for params in ({"stage": "archived"}, {"sponsor_id": "nope"}, {"podcast_id": "1"}):
        assert (await client.get("/v1/campaigns", params=params, headers=team.auth("viewer"))).status_code == 422


async def test_campaigns_running_in_a_range(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    show = await make_podcast(client, team)
    march = (await make_campaign(client, team, start_date="2026-03-01", end_date="2026-03-31"))["id"]
    from_april = (await make_campaign(client, team, start_date="2026-04-01"))["id"]
    # no dates of its own: its live bookings' flights stand in (the cancelled one does not)
    by_flights = (await make_campaign(client, team))["id"]
    await make_booking(client, team, by_flights, show, flight_start="2026-05-10", flight_end="2026-05-20")
    await make_booking(
        client, team, by_flights, show, placement="pre_roll", flight_start="2026-01-01", flight_end="2026-12-31",
        status="cancelled",
    )  # fmt: skip
    unknown = (await make_campaign(client, team))["id"]  # no dates, no bookings
    cases: list[tuple[dict[str, str], set[str]]] = [
        ({}, {march, from_april, by_flights, unknown}),
        ({"from": "2026-03-31"}, {march, from_april, by_flights}),  # the last day counts
        ({"from": "2026-04-01"}, {from_april, by_flights}),
        ({"to": "2026-03-01"}, {march}),  # a date `to` includes its day
        ({"to": "2026-02-28"}, set()),
        ({"from": "2026-03-15", "to": "2026-04-01"}, {march, from_april}),
        ({"from": "2026-05-20", "to": "2026-05-20"}, {from_april, by_flights}),
        ({"from": "2026-05-21", "to": "2026-06-30"}, {from_april}),
        ({"from": "2026-01-01", "to": "2026-02-01"}, set()),
        # datetimes with a zone stand for their UTC day; an exclusive `to` at midnight ends the day before
        ({"to": "2026-03-02T00:00:00Z"}, {march}),
        ({"to": "2026-03-01T00:00:00Z"}, set()),
        ({"from": "2026-04-01T01:00:00+02:00"}, {march, from_april, by_flights}),
        ({"to": "9999-12-31"}, {march, from_april, by_flights}),
    ]
    for params, expected in cases:
        assert set(await campaign_ids(client, team, **params)) == expected, params
    for params in (
        {"from": "yesterday"},
        {"to": "2026-03-01T00:00:00"},  # no zone
        {"to": "0001-01-01T00:00:00+00:00"},  # the day before it does not exist
        {"from": "2026-13-01"},
    ):
        response = await client.get("/v1/campaigns", params=params, headers=team.auth("viewer"))
        assert response.status_code == 422, (params, response.text)
        assert response.json()["parameter"] in ("from", "to")


async def test_campaigns_page_through_filters(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    active = [(await make_campaign(client, team, stage="active"))["id"] for _ in range(5)]
    drafts = [(await make_campaign(client, team))["id"] for _ in range(2)]
    pages = await all_pages(client, team, "/v1/campaigns", {"stage": "active"}, limit=2)
    assert [i for p in pages for i in p] == list(reversed(active))
    assert [len(p) for p in pages] == [2, 2, 1]
    everything = await all_pages(client, team, "/v1/campaigns", {}, limit=3)
    assert [i for p in everything for i in p] == list(reversed(active + drafts))


async def test_bookings_filter_by_status_and_podcast_and_page(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team(tier="enterprise")
    podcasts = [await make_podcast(client, team, f"Show {n}") for n in range(3)]
    campaign = (await make_campaign(client, team))["id"]
    other_campaign = (await make_campaign(client, team))["id"]
    made: list[dict[str, Any]] = []
    for n in range(7):
        made.append(
            await make_booking(
                client,
                team,
                campaign,
                podcasts[n % 3],
                placement=("pre_roll", "mid_roll", "post_roll")[n % 3],
                status="confirmed" if n % 2 else "pending",
                flight_start=f"2026-03-{n + 1:02d}",
                flight_end=f"2026-03-{n + 1:02d}",
            )  # fmt: skip
        )
    await make_booking(client, team, other_campaign, podcasts[0])
    path = f"/v1/campaigns/{campaign}/bookings"
    pages = await all_pages(client, team, path, {}, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == [b["id"] for b in reversed(made)]
    confirmed = await all_pages(client, team, path, {"status": "confirmed"}, limit=2)
    assert [i for p in confirmed for i in p] == [b["id"] for b in reversed(made) if b["status"] == "confirmed"]
    on_first = await all_pages(client, team, path, {"podcast_id": podcasts[0]}, limit=500)
    assert on_first == [[b["id"] for b in reversed(made) if b["podcast_id"] == podcasts[0]]]
    both = await all_pages(client, team, path, {"podcast_id": podcasts[1], "status": "confirmed"}, limit=500)
    assert both == [[b["id"] for b in reversed(made) if b["podcast_id"] == podcasts[1] and b["status"] == "confirmed"]]
    for params in ({"status": "live"}, {"podcast_id": "x"}, {"limit": 501}):
        assert (await client.get(path, params=params, headers=team.auth("viewer"))).status_code == 422


@pytest.mark.parametrize(
    "path", ["/v1/campaigns/{id}/bookings", "/v1/campaigns/{id}/history", "/v1/campaigns/{id}/episodes"]
)
async def test_lists_under_a_missing_campaign_are_not_found(
    path: str,
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    response = await client.get(path.format(id=uuid.uuid4()), headers=team.auth("viewer"))
    assert response.status_code == 404 and response.json()["detail"] == "no such campaign"
