"""Sponsorship test data made through the API: sponsors, campaigns moved along the stage machine, bookings."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories.identity import Team

# How to reach each stage from draft, through the stage machine.
PATH_TO: dict[str, list[str]] = {
    "draft": [],
    "active": ["active"],
    "paused": ["active", "paused"],
    "completed": ["active", "completed"],
    "cancelled": ["cancelled"],
}


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
    """A valid booking request (a March 2026 CPM mid-roll) with ``fields`` overriding its defaults."""
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
