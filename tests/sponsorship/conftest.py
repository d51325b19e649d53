"""Sponsorship test helpers: podcasts, episodes, campaigns and bookings made through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Team

# How to reach each stage from draft, through the stage machine.
PATH_TO = {
    "draft": [],
    "active": ["active"],
    "paused": ["active", "paused"],
    "completed": ["active", "completed"],
    "cancelled": ["cancelled"],
}


async def make_podcast(client: httpx.AsyncClient, team: Team, name: str = "Show") -> str:
    created = await client.post("/v1/podcasts", json={"name": name}, headers=team.auth("owner"))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def make_episode(client: httpx.AsyncClient, team: Team, podcast_id: str, title: str = "Episode") -> str:
    created = await client.post(
        f"/v1/podcasts/{podcast_id}/episodes", json={"title": title}, headers=team.auth("owner")
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def make_sponsor(client: httpx.AsyncClient, team: Team, name: str = "Acme") -> str:
    created = await client.post("/v1/sponsors", json={"name": name}, headers=team.auth("sales"))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def make_campaign(client: httpx.AsyncClient, team: Team, stage: str = "draft", **fields: Any) -> dict[str, Any]:
    """A campaign created by the sales user, then moved to ``stage`` along the stage machine."""
    created = await client.post("/v1/campaigns", json={"name": "Campaign", **fields}, headers=team.auth("sales"))
    assert created.status_code == 201, created.text
    campaign: dict[str, Any] = created.json()
    for step in PATH_TO[stage]:
        moved = await client.post(
            f"/v1/campaigns/{campaign['id']}/transition", json={"stage": step}, headers=team.auth("sales")
        )
        assert moved.status_code == 200, moved.text
        campaign = moved.json()
    return campaign


def booking_body(podcast_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "podcast_id": podcast_id,
        "placement": "mid_roll",
        "ad_format": "host_read",
        "pricing_model": "cpm",
        "rate_minor": 2500,
        "currency": "USD",
        "booked_impressions": 100_000,
        "flight_start": "2026-03-01",
        "flight_end": "2026-03-31",
    }
    body.update(fields)
    return body


async def make_booking(
    client: httpx.AsyncClient, team: Team, campaign_id: str, podcast_id: str, **fields: Any
) -> dict[str, Any]:
    created = await client.post(
        f"/v1/campaigns/{campaign_id}/bookings", json=booking_body(podcast_id, **fields), headers=team.auth("sales")
    )
    assert created.status_code == 201, created.text
    booking: dict[str, Any] = created.json()
    return booking
