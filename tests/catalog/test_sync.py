"""Feed sync end to end: every shared real-world feed, from a real local HTTP server, through the API."""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from castmetrics.app import create_app
from castmetrics.catalog import rss
from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.factories.identity import Team
from tests.support.http import asgi_client
from tests.support.paths import REPO_ROOT

FEEDS = REPO_ROOT / "tests" / "fixtures" / "feeds"
FEED_FILES = sorted(p.name for p in FEEDS.glob("*.xml"))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def feed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Serves a copy of the shared feeds (tests may change their copy) over real HTTP."""
    root = tmp_path_factory.mktemp("feeds")
    for name in FEED_FILES:
        (root / name).write_bytes((FEEDS / name).read_bytes())
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


@pytest.fixture(scope="module")
def fetch_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_fetch": True, "public_url": "https://cm.example"})


@pytest.fixture
async def feed_client(fetch_settings: Settings, db: Database, owner_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(fetch_settings, database=db, admin_database=owner_db)
    async with asgi_client(app) as client:
        yield client


async def _podcast(client: httpx.AsyncClient, team: Team, url: str) -> str:
    created = await client.post("/v1/podcasts", json={"name": "Feed", "rss_feed_url": url}, headers=team.auth("owner"))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


@pytest.mark.parametrize("feed", FEED_FILES)
async def test_every_shared_feed_syncs_and_resyncs_unchanged(
    feed: str,
    feed_server: tuple[str, Path],
    feed_client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
    db: Database,
) -> None:
    base, _ = feed_server
    team: Team = await make_team(tier="enterprise")
    expected = len(rss.parse_feed((FEEDS / feed).read_bytes()).episodes)
    podcast_id = await _podcast(feed_client, team, f"{base}/{feed}")
    first = await feed_client.post(f"/v1/podcasts/{podcast_id}/sync", headers=team.auth("owner"))
    assert first.status_code == 200, first.text
    assert (first.json()["created"], first.json()["updated"], first.json()["unchanged"]) == (expected, 0, 0)
    # the server honours If-Modified-Since: nothing is parsed again
    second = (await feed_client.post(f"/v1/podcasts/{podcast_id}/sync", headers=team.auth("owner"))).json()
    assert (second["outcome"], second["created"], second["updated"]) == ("not_modified", 0, 0)
    # a full fetch of the same document changes nothing either
    await feed_client.patch(
        f"/v1/podcasts/{podcast_id}", json={"rss_feed_url": f"{base}/{feed}?again=1"}, headers=team.auth("owner")
    )
    third = (await feed_client.post(f"/v1/podcasts/{podcast_id}/sync", headers=team.auth("owner"))).json()
    assert (third["outcome"], third["created"], third["updated"], third["unchanged"]) == ("ok", 0, 0, expected)
    async with db.tenant_transaction(team.tenant_id) as session:
        published = (
            await session.execute(text("SELECT count(*) FROM outbox_events WHERE event_type = 'episode.published'"))
        ).scalar_one()
    assert published == expected  # one event per new episode, none for re-syncs
    history = (await feed_client.get(f"/v1/podcasts/{podcast_id}/syncs", headers=team.auth("viewer"))).json()
    assert [s["outcome"] for s in history["items"]] == ["ok", "not_modified", "ok"]


async def test_episode_fields_prefix_and_tracked_feed(
    feed_server: tuple[str, Path],
    feed_client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    base, _ = feed_server
    team: Team = await make_team(tier="enterprise")
    podcast_id = await _podcast(feed_client, team, f"{base}/apple-example-all-about-everything.xml")
    await feed_client.post(f"/v1/podcasts/{podcast_id}/sync", headers=team.auth("owner"))
    podcast = (await feed_client.get(f"/v1/podcasts/{podcast_id}", headers=team.auth("viewer"))).json()
    assert podcast["tracked_feed_url"] == f"https://cm.example/feeds/{podcast_id}.xml"
    listed = await feed_client.get(f"/v1/podcasts/{podcast_id}/episodes", headers=team.auth("viewer"))
    episodes = listed.json()["items"]
    assert episodes
    for episode in episodes:
        if episode["audio_url"]:
            rest = episode["audio_url"].split("://", 1)[1]
            assert episode["prefix_url"] == f"https://cm.example/p/{team.slug}/{rest}"
    tracked = await feed_client.get(f"/feeds/{podcast_id}.xml")
    assert tracked.status_code == 200 and tracked.headers["content-type"].startswith("application/rss+xml")
    assert "sandbox" in tracked.headers["content-security-policy"]  # tenant markup never runs on our origin
    assert tracked.headers["x-content-type-options"] == "nosniff"
    parsed = rss.parse_feed(tracked.content)
    assert len(parsed.episodes) == len(episodes)
    assert all(e.audio_url.startswith(f"https://cm.example/p/{team.slug}/") for e in parsed.episodes if e.audio_url)
    assert (await feed_client.get("/feeds/00000000-0000-4000-8000-000000000000.xml")).status_code == 404


async def test_episodes_that_leave_the_feed_are_kept_and_marked(
    feed_server: tuple[str, Path],
    feed_client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    base, root = feed_server
    team: Team = await make_team(tier="enterprise")
    original = (FEEDS / "apple-example-all-about-everything.xml").read_bytes()
    (root / "shrinking.xml").write_bytes(original)
    podcast_id = await _podcast(feed_client, team, f"{base}/shrinking.xml")
    first = (await feed_client.post(f"/v1/podcasts/{podcast_id}/sync", headers=team.auth("owner"))).json()
    # drop the last <item> from the feed
    start, end = original.rindex(b"<item>"), original.rindex(b"</item>") + len(b"</item>")
    (root / "shrinking.xml").write_bytes(original[:start] + original[end:])
    await feed_client.patch(
        f"/v1/podcasts/{podcast_id}", json={"rss_feed_url": f"{base}/shrinking.xml?v=2"}, headers=team.auth("owner")
    )
    second = (await feed_client.post(f"/v1/podcasts/{podcast_id}/sync", headers=team.auth("owner"))).json()
    assert second["left_feed"] == 1 and second["unchanged"] == first["created"] - 1
    listed = await feed_client.get(
        f"/v1/podcasts/{podcast_id}/episodes", params={"limit": 500}, headers=team.auth("owner")
    )
    episodes = listed.json()["items"]
    assert len(episodes) == first["created"]  # nothing deleted
    assert sum(1 for e in episodes if not e["in_feed"]) == 1


async def test_fetch_failures_are_recorded_and_answered(
    feed_server: tuple[str, Path],
    client: httpx.AsyncClient,
    feed_client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    base, _ = feed_server
    team: Team = await make_team(tier="enterprise")
    missing = await _podcast(feed_client, team, f"{base}/no-such-feed.xml")
    response = await feed_client.post(f"/v1/podcasts/{missing}/sync", headers=team.auth("owner"))
    assert response.status_code == 422 and response.json()["upstream_status"] == 404
    history = (await feed_client.get(f"/v1/podcasts/{missing}/syncs", headers=team.auth("owner"))).json()["items"]
    assert history[0]["outcome"] == "failed" and "404" in history[0]["error"]
    # the default app refuses private addresses: 127.0.0.1 is one
    local = await _podcast(client, team, f"{base}/apple-example-all-about-everything.xml")
    refused = await client.post(f"/v1/podcasts/{local}/sync", headers=team.auth("owner"))
    assert refused.status_code == 422 and "private" in refused.json()["detail"]


async def test_podcast_quota_and_validation(client: httpx.AsyncClient, make_team) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team(tier="free")
    for n in range(3):
        ok = await client.post("/v1/podcasts", json={"name": f"Show {n}"}, headers=team.auth("admin"))
        assert ok.status_code == 201
    full = await client.post("/v1/podcasts", json={"name": "Show 4"}, headers=team.auth("admin"))
    assert full.status_code == 402 and full.json()["quota"] == "podcasts"
    for body in ({"name": ""}, {"name": "x", "rss_feed_url": "ftp://x/feed"}, {"name": "x", "colour": 1}):
        assert (await client.post("/v1/podcasts", json=body, headers=team.auth("admin"))).status_code == 422
    assert (await client.post("/v1/podcasts", json={"name": "x"}, headers=team.auth("viewer"))).status_code == 403


def test_import_rss_command(feed_server: tuple[str, Path], settings: Settings, runtime_url: str) -> None:
    from tests.support.cli import run_cli

    base, _ = feed_server
    assert run_cli(settings, "tenant", "create", "Importer", "--slug", "importer", "--tier", "pro").returncode == 0
    env = {"CASTMETRICS_ALLOW_PRIVATE_FETCH": "1"}
    url = f"{base}/npp-se-radio.xml"
    expected = len(rss.parse_feed((FEEDS / "npp-se-radio.xml").read_bytes()).episodes)
    first = run_cli(settings, "import-rss", url, "--tenant", "importer", env=env)
    assert first.returncode == 0, first.stderr
    assert f"{expected} created" in first.stdout
    again = run_cli(settings, "import-rss", url, "--tenant", "importer", env=env)
    assert "0 created, 0 updated" in again.stdout
    refused = run_cli(settings, "import-rss", url, "--tenant", "importer")  # private fetches not allowed
    assert refused.returncode == 1 and "private" in refused.stderr
    assert run_cli(settings, "import-rss", "ftp://x/feed", "--tenant", "importer").returncode == 2
    assert run_cli(settings, "import-rss", url, "--tenant", "nobody", env=env).returncode == 1


async def test_scheduled_sync_picks_due_podcasts(
    feed_server: tuple[str, Path],
    fetch_settings: Settings,
    feed_client: httpx.AsyncClient,
    make_team,
    db: Database,  # type: ignore[no-untyped-def]
) -> None:
    from castmetrics.catalog.tasks import sync_due

    base, _ = feed_server
    team: Team = await make_team(tier="enterprise")
    podcast_id = await _podcast(feed_client, team, f"{base}/npp-neo4j.xml")
    assert await sync_due(db, fetch_settings) >= 1  # new podcasts are due at once
    history = (await feed_client.get(f"/v1/podcasts/{podcast_id}/syncs", headers=team.auth("owner"))).json()["items"]
    assert [(s["trigger"], s["outcome"]) for s in history] == [("schedule", "ok")]
    assert await sync_due(db, fetch_settings) == 0  # next one after the interval (60 minutes)


async def test_concurrent_creates_cannot_pass_the_quota(client: httpx.AsyncClient, make_team) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    team: Team = await make_team(tier="free")
    responses = await asyncio.gather(
        *(client.post("/v1/podcasts", json={"name": f"Race {n}"}, headers=team.auth("owner")) for n in range(5))
    )
    assert sorted(r.status_code for r in responses) == [201, 201, 201, 402, 402]
