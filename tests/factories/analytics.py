"""Analytics test data: a show's traffic, listener events and prefix requests spread over days, recorded."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx

from castmetrics.db.session import Database
from castmetrics.measurement.prefix import RawRequest
from castmetrics.measurement.recorder import Recorder
from tests.factories.catalog import publish
from tests.factories.events import listener_event
from tests.factories.identity import Team
from tests.factories.measurement import APPLE, OVERCAST, SPOTIFY, Show, make_show, request

AGENTS = [APPLE, OVERCAST, SPOTIFY, "curl/8.4.0", "Googlebot/2.1 (+http://www.google.com/bot.html)"]
TYPES = ["play", "play", "play", "pause", "resume", "progress", "skip", "complete", "download", "seek"]


@dataclass
class Traffic:
    """A show with traffic on ``days`` (newest first), a second podcast, and its episodes' publications."""

    show: Show
    other_podcast_id: str
    days: list[date]
    published: dict[str, datetime]


async def add_traffic(
    client: httpx.AsyncClient, show: Show, recorder: Recorder, days: list[date], rng: random.Random, count: int = 400
) -> None:
    """``count`` listener events and as many prefix requests, spread over ``days`` (none in the future)."""
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    requests: list[RawRequest] = []
    for _ in range(count):
        moment = min(
            datetime.combine(rng.choice(days), time.min, tzinfo=UTC) + timedelta(seconds=rng.randrange(86_400)), now
        )
        data = {"listened_seconds": rng.randrange(0, 900)} if rng.random() < 0.6 else None
        events.append(
            listener_event(
                rng.choice(show.episode_ids), listener_id=f"l{rng.randrange(60)}", event_type=rng.choice(TYPES),
                occurred_at=moment.isoformat(), event_data=data,
            )
        )  # fmt: skip
        ranged = rng.random() < 0.2
        requests.append(
            request(
                show, rng.randrange(len(show.episode_ids)), address=f"198.51.100.{rng.randrange(1, 40)}",
                agent=rng.choice(AGENTS), method="HEAD" if rng.random() < 0.05 else "GET",
                range_=f"bytes=0-{rng.choice([1, 400_000, 2_000_000])}" if ranged else "", at=moment,
            )
        )  # fmt: skip
    response = await client.post("/v1/events/listener", json=events, headers=show.team.auth("owner"))
    assert response.status_code == 200 and response.json()["accepted"] == count, response.text
    for item in requests:
        recorder.buffer.append(item)
    await recorder.flush()


async def build_traffic(client: httpx.AsyncClient, team: Team, owner_db: Database, recorder: Recorder) -> Traffic:
    """A show of three episodes (two published inside the window), a second podcast, ten days of traffic."""
    show = await make_show(client, team, owner_db, episodes=3)
    other = await client.post("/v1/podcasts", json={"name": "Other"}, headers=show.team.auth("owner"))
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in range(10)]
    published = {
        show.episode_ids[0]: datetime.combine(days[-1], time(9, 40), tzinfo=UTC),
        show.episode_ids[1]: datetime.combine(days[4], time(17, 5), tzinfo=UTC),
    }
    for episode, at in published.items():
        await publish(owner_db, episode, at)
    await add_traffic(client, show, recorder, days, random.Random(11))
    return Traffic(show, other.json()["id"], days, published)
