"""Event test data: a catalog to send events about, listener events, and counting what was stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from castmetrics.db.session import Database
from tests.factories.identity import Team


@dataclass
class Catalog:
    """A team's podcast with episodes and a campaign, plus a second podcast with one episode."""

    team: Team
    podcast_id: str
    episode_ids: list[str]
    campaign_id: str
    other_podcast_id: str = ""
    other_episode_ids: list[str] = field(default_factory=list)


async def build_catalog(client: httpx.AsyncClient, team: Team, episodes: int = 3) -> Catalog:
    owner = team.auth("owner")
    podcast = await client.post("/v1/podcasts", json={"name": "Show"}, headers=owner)
    assert podcast.status_code == 201, podcast.text
    podcast_id = podcast.json()["id"]
    episode_ids = []
    for n in range(episodes):
        made = await client.post(f"/v1/podcasts/{podcast_id}/episodes", json={"title": f"E{n}"}, headers=owner)
        assert made.status_code == 201, made.text
        episode_ids.append(made.json()["id"])
    campaign = await client.post("/v1/campaigns", json={"name": "Spring"}, headers=owner)
    assert campaign.status_code == 201, campaign.text
    other = await client.post("/v1/podcasts", json={"name": "Other show"}, headers=owner)
    other_episode = await client.post(
        f"/v1/podcasts/{other.json()['id']}/episodes", json={"title": "O1"}, headers=owner
    )
    return Catalog(
        team, podcast_id, episode_ids, campaign.json()["id"], other.json()["id"], [other_episode.json()["id"]]
    )


def listener_event(episode_id: str, **fields: Any) -> dict[str, Any]:
    """A play five minutes ago by a new listener, with ``fields`` overriding any of it."""
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "episode_id": episode_id,
        "listener_id": f"listener-{uuid.uuid4().hex[:8]}",
        "event_type": "play",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }
    event.update(fields)
    return event


async def count_events(db: Database, tenant_id: uuid.UUID, table: str = "listener_events") -> int:
    """Rows of the tenant in ``table`` (a trusted table name of the test's own)."""
    async with db.tenant_transaction(tenant_id) as session:
        return int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
