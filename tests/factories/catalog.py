"""Catalog test data: podcasts and episodes made through the API, and an episode's publication moment."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
from sqlalchemy import text

from castmetrics.db.session import Database
from tests.factories.identity import Team


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


async def publish(owner_db: Database, episode_id: str, at: datetime) -> None:
    """Set the episode's publication moment to ``at``, directly in its row (as the owner)."""
    async with owner_db.transaction() as session:
        await session.execute(
            text("UPDATE episodes SET published_at = :at WHERE id = :id"), {"at": at, "id": uuid.UUID(episode_id)}
        )
