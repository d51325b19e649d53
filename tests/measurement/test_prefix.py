"""The prefix redirect: answers at once for any slug and URL, and what it records."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement.prefix import Buffer
from tests.factories.measurement import APPLE, Show
from tests.support.http import asgi_client


async def test_redirects_any_url_for_any_slug_with_the_query_kept(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
    # The session's app runs no lifespan, so its tenant directory never loads: the state of a process started
    # during an outage with no snapshot, which refuses no slug. Refusals: tests/measurement/test_prefix_directory.py
    buffer: Buffer = app.state.prefix_buffer
    buffer.take()
    response = await client.get(
        "/p/nobody-knows/dts.podtrac.com/redirect.mp3/media.example.com/a%20b/ep.mp3?token=x&y=1",
        headers={"User-Agent": APPLE, "Range": "bytes=0-1", "Referer": "https://example.org/"},
    )
    assert response.status_code == 302
    assert (
        response.headers["location"]
        == "https://dts.podtrac.com/redirect.mp3/media.example.com/a%20b/ep.mp3?token=x&y=1"
    )
    assert response.headers["cache-control"] == "private, no-cache"
    head = await client.head("/p/x/media.example.com/ep.mp3")
    assert head.status_code == 302 and head.headers["location"] == "https://media.example.com/ep.mp3"
    recorded = buffer.take()
    assert [(r.slug, r.method) for r in recorded] == [("nobody-knows", "GET"), ("x", "HEAD")]
    first = recorded[0]
    assert (first.user_agent, first.range, first.referer) == (APPLE, "bytes=0-1", "https://example.org/")
    assert first.url == "dts.podtrac.com/redirect.mp3/media.example.com/a%20b/ep.mp3?token=x&y=1"


async def test_a_prefix_without_a_url_is_a_400_problem(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
    app.state.prefix_buffer.take()
    for path in ("/p/", "/p/slug", "/p/slug/", "/p/slug//evil.example/x.mp3", "/p//media.example.com/x.mp3"):
        response = await client.get(path)
        assert response.status_code == 400, path
        assert response.headers["content-type"] == "application/problem+json"
    assert len(app.state.prefix_buffer) == 0
    # paths that merely start like the prefix are the application's
    assert (await client.get("/pricing")).status_code == 404


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(settings: Settings, db: Database) -> None:
    for trusted, expected in (("127.0.0.1/32", "198.51.100.23"), ("", "127.0.0.1")):
        app = create_app(settings.model_copy(update={"trusted_proxies": trusted}), database=db)
        async with asgi_client(app) as http:
            await http.get("/p/s/media.example.com/ep.mp3", headers={"X-Forwarded-For": "198.51.100.23, 127.0.0.1"})
        assert [r.address for r in app.state.prefix_buffer.take()] == [expected]


async def test_requests_are_counted_within_seconds_on_a_live_server(live_server: str, show: Show) -> None:
    url = f"{live_server}/p/{show.team.slug}/{show.audio_urls[0].removeprefix('https://')}"
    async with httpx.AsyncClient() as http:
        # the new tenant's slug reaches the server's tenant directory within a second (a HEAD is no download)
        started = time.monotonic()
        while (await http.head(url, headers={"User-Agent": APPLE})).status_code == 404:
            assert time.monotonic() - started < 1.0, "the new tenant's slug is not known within a second"
            await asyncio.sleep(0.01)
        for n in range(20):
            response = await http.get(url, headers={"User-Agent": f"{APPLE} n{n}"}, follow_redirects=False)
            assert response.status_code == 302
        started = time.monotonic()
        today = datetime.now(UTC).date().isoformat()
        while True:
            series = await http.get(
                f"{live_server}/v1/analytics/episodes/{show.episode_ids[0]}/timeseries",
                params={"metric": "downloads", "from": today, "to": today},
                headers=show.team.auth("owner"),
            )
            if series.json()["points"][0]["value"] == 20:
                break
            assert time.monotonic() - started < 10, series.text
            await asyncio.sleep(0.2)
