"""Report test data: a sponsor's active campaign with two bookings, real downloads counted into the rollups,
and attribution events ingested through the API, so every number of the report is non-zero."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx

from castmetrics.db.session import Database
from castmetrics.measurement.recorder import Recorder
from castmetrics.rollups import service as rollups_service
from tests.factories.identity import Team
from tests.factories.measurement import Show, make_show, request
from tests.factories.sponsorship import make_booking, make_campaign, make_sponsor

CAMPAIGN_NAME = "Café Launch — Spring ☕ 2026"
SPONSOR_NAME = "Acme Roasters"
MODEL_LABELS = ("First touch", "Last touch", "Linear", "Time decay", "Position based")


@dataclass
class Deal:
    """An active campaign of a sponsor: a CPM booking on episode 0 and a flat run-of-show booking,
    downloads on three days, three converting listeners (one with two touches, one with none)."""

    team: Team
    show: Show
    sponsor_id: str
    campaign_id: str
    cpm_id: str
    flat_id: str
    today: date


async def download(recorder: Recorder, show: Show, episode: int, count: int, at: datetime) -> None:
    """``count`` IAB downloads of the episode at ``at``, each from its own listener, rolled up."""
    for n in range(count):
        recorder.buffer.append(request(show, episode, address=f"198.18.{uuid.uuid4().int % 250}.{n + 1}", at=at))
    await recorder.flush()
    await rollups_service.refresh_all(recorder.db)


async def ingest(client: httpx.AsyncClient, team: Team, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/events/attribution", json=events, headers=team.auth("owner"))
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == [], response.text


def attribution_event(campaign_id: str, listener: str, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "campaign_id": campaign_id, "listener_id": listener, "attribution_type": kind,
            "occurred_at": at.isoformat(), **fields}  # fmt: skip


async def make_deal(
    client: httpx.AsyncClient, team: Team, owner_db: Database, recorder: Recorder, name: str = CAMPAIGN_NAME
) -> Deal:
    show = await make_show(client, team, owner_db, episodes=2)
    today = datetime.now(UTC).date()
    sponsor = await make_sponsor(client, team, SPONSOR_NAME)
    campaign = (await make_campaign(client, team, "active", name=name, sponsor_id=sponsor))["id"]
    cpm = await make_booking(
        client, team, campaign, show.podcast_id, episode_id=show.episode_ids[0], pricing_model="cpm",
        rate_minor=2500, booked_impressions=100, flight_start=(today - timedelta(days=5)).isoformat(),
        flight_end=(today + timedelta(days=4)).isoformat(),
    )  # fmt: skip
    flat = await make_booking(
        client, team, campaign, show.podcast_id, placement="pre_roll", pricing_model="flat", rate_minor=50_000,
        booked_impressions=50, flight_start=(today - timedelta(days=3)).isoformat(),
        flight_end=(today + timedelta(days=6)).isoformat(),
    )  # fmt: skip
    noon = time(12)
    await download(recorder, show, 0, 6, datetime.combine(today - timedelta(days=1), noon, UTC))
    await download(recorder, show, 0, 4, datetime.combine(today - timedelta(days=4), noon, UTC))
    await download(recorder, show, 1, 3, datetime.combine(today - timedelta(days=2), noon, UTC))
    now = datetime.now(UTC).replace(microsecond=0)
    e0, e1 = show.episode_ids
    await ingest(client, team, [
        attribution_event(campaign, "l1", "impression", now - timedelta(days=3), episode_id=e1),
        attribution_event(campaign, "l1", "click", now - timedelta(days=1), episode_id=e0),
        attribution_event(campaign, "l1", "conversion", now - timedelta(hours=1),
                          attribution_data={"revenue": 100, "currency": "USD"}),
        attribution_event(campaign, "l2", "impression", now - timedelta(days=2), episode_id=e0),
        attribution_event(campaign, "l2", "conversion", now - timedelta(days=1, hours=2),
                          attribution_data={"revenue": 40, "currency": "USD"}),
        attribution_event(campaign, "l3", "conversion", now - timedelta(hours=2),
                          attribution_data={"revenue": 10, "currency": "USD"}),
    ])  # fmt: skip
    return Deal(team, show, sponsor, campaign, cpm["id"], flat["id"], today)
