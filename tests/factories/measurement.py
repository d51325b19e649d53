"""Measurement test data: a show whose episodes have audio URLs and sizes, and prefix requests for them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.measurement.prefix import RawRequest
from tests.factories.identity import Team

APPLE = "AppleCoreMedia/1.0.0.20E252 (iPhone; U; CPU OS 16_4_1 like Mac OS X; en_us)"
OVERCAST = "Overcast/3.0 (+http://overcast.fm/; iOS podcast app)"
SPOTIFY = "Spotify/8.8.0 iOS/16.4.1 (iPhone14,5)"


@dataclass
class Show:
    """A team's podcast whose episodes have audio URLs (``audio_urls[i]`` is ``episode_ids[i]``'s)."""

    team: Team
    podcast_id: str
    episode_ids: list[str]
    audio_urls: list[str]


async def make_show(client: httpx.AsyncClient, team: Team, owner_db: Database, episodes: int = 2) -> Show:
    owner = team.auth("owner")
    podcast = (await client.post("/v1/podcasts", json={"name": "Measured"}, headers=owner)).json()["id"]
    ids, audio = [], []
    for n in range(episodes):
        url = f"https://media.example.com/{uuid.uuid4().hex[:8]}/episode-{n}.mp3"
        made = await client.post(
            f"/v1/podcasts/{podcast}/episodes",
            json={"title": f"E{n}", "audio_url": url, "duration_seconds": 3600},
            headers=owner,
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
        audio.append(url)
    # 60 MB for an hour: one minute is 1 MB (plus the 10 kB ID3 allowance)
    async with owner_db.transaction() as session:
        await session.execute(
            text("UPDATE episodes SET audio_length_bytes = 60000000 WHERE tenant_id = :t"), {"t": team.tenant_id}
        )
    return Show(team, podcast, ids, audio)


def request(
    show: Show,
    episode: int = 0,
    *,
    address: str = "203.0.113.7",
    agent: str = APPLE,
    method: str = "GET",
    range_: str = "",
    at: datetime | None = None,
    referer: str = "",
    prefix: str = "",
) -> RawRequest:
    """A request through the measurement prefix for one of the show's episodes."""
    url = prefix + show.audio_urls[episode].removeprefix("https://")
    return RawRequest(
        at=(at or datetime.now(UTC)).timestamp(),
        slug=show.team.slug,
        url=url,
        address=address,
        user_agent=agent,
        referer=referer,
        range=range_,
        method=method,
    )
