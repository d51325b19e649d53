"""The prefix is not an open redirect: unknown slugs, userinfo in the host and browser navigations to hosts the
tenant's episodes do not use are refused, from the tenant directory in memory, which follows the database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import text

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db import migrate as migrations
from castmetrics.db import urls
from castmetrics.db.embedded import EmbeddedPostgres
from castmetrics.db.session import Database
from castmetrics.measurement.prefix import Buffer
from castmetrics.measurement.tenant_directory import TenantDirectory
from tests.support.http import asgi_client

PLAYER = "AppleCoreMedia/1.0.0.20E252 (iPhone; U; CPU OS 16_4_1 like Mac OS X; en_us)"
BROWSER = {
    "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
}


@pytest.fixture
async def prefix_app(settings: Settings, db: Database, owner_db: Database, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """An app whose tenant directory follows the database, as ``serve``'s start-up makes it."""
    app = create_app(settings.model_copy(update={"data_dir": tmp_path}), database=db, admin_database=owner_db)
    await app.state.prefix_directory.start()
    assert app.state.prefix_directory.loaded
    yield app
    await app.state.prefix_directory.stop()


async def until(condition: Any, within: float = 5.0) -> float:
    """Poll ``condition()`` until it holds; answers the seconds it took (fails after ``within``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("castmetrics_prefix_refused_total", {"reason": reason}) or 0.0


async def raw_get(app: FastAPI, raw_path: bytes, headers: dict[str, str] | None = None) -> int:
    """The status of a GET whose path reaches the app byte for byte (an HTTP client would re-encode it)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "https",
        "path": raw_path.decode("latin-1"), "raw_path": raw_path, "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("198.51.100.7", 40000), "server": ("testserver", 443),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


async def test_an_unknown_slug_is_a_404_and_nothing_is_recorded(prefix_app: FastAPI, make_tenant) -> None:  # type: ignore[no-untyped-def]
    directory: TenantDirectory = prefix_app.state.prefix_directory
    buffer: Buffer = prefix_app.state.prefix_buffer
    tenant = await make_tenant()
    await until(lambda: directory.tenant_of(tenant.slug) == tenant.id)
    before = refused("unknown_tenant")

    async with asgi_client(prefix_app) as http:
        unknown = await http.get("/p/nobody-knows/evil.example/phish.html", headers={"User-Agent": PLAYER})
        known = await http.get(f"/p/{tenant.slug}/media.example.com/ep.mp3", headers={"User-Agent": PLAYER})

    assert unknown.status_code == 404, unknown.text
    assert unknown.headers["content-type"] == "application/problem+json" and "location" not in unknown.headers
    assert known.status_code == 302 and known.headers["location"] == "https://media.example.com/ep.mp3"
    # requests for unknown slugs were never counted; now they are not even recorded
    assert [r.slug for r in buffer.take()] == [tenant.slug]
    assert refused("unknown_tenant") == before + 1


async def test_a_new_tenant_is_redirected_within_a_second(prefix_app: FastAPI, make_tenant) -> None:  # type: ignore[no-untyped-def]
    directory: TenantDirectory = prefix_app.state.prefix_directory
    async with asgi_client(prefix_app) as http:
        # created by an operator (the CLI's path) ...
        started = time.monotonic()
        tenant = await make_tenant()
        by_operator = time.monotonic() - started + await until(lambda: directory.tenant_of(tenant.slug) is not None)
        # ... and by a self-service sign-up
        slug = f"new-{uuid.uuid4().hex[:10]}"
        started = time.monotonic()
        signup = await http.post(
            "/v1/auth/signup",
            json={"tenant_name": "New Network", "tenant_slug": slug, "email": f"owner@{slug}.example",
                  "password": "correct horse battery staple 42", "name": "Sam Owner"},
        )  # fmt: skip
        assert signup.status_code == 201, signup.text
        by_signup = time.monotonic() - started + await until(lambda: directory.tenant_of(slug) is not None)
        answer = await http.get(f"/p/{slug}/media.example.com/ep.mp3", headers={"User-Agent": PLAYER})
    assert by_operator < 1.0 and by_signup < 1.0, (by_operator, by_signup)
    assert answer.status_code == 302


async def test_userinfo_backslash_or_percent_in_the_host_is_a_400(prefix_app: FastAPI, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    directory: TenantDirectory = prefix_app.state.prefix_directory
    await until(lambda: directory.tenant_of(tenant.slug) is not None)
    slug = tenant.slug.encode()
    for host in (
        b"media.example.com@evil.example",  # https://media.example.com@evil.example/ goes to evil.example
        b"evil.example\\@media.example.com",  # a backslash is a slash to browsers
        b"evil.example\\media.example.com",
        b"evil.example%5C@media.example.com",
        b"media.example.com%40evil.example",
    ):
        assert await raw_get(prefix_app, b"/p/" + slug + b"/" + host + b"/ep.mp3") == 400, host
    # in the path they are just characters of the audio URL
    assert await raw_get(prefix_app, b"/p/" + slug + b"/media.example.com/a@b/c%40d/ep.mp3") == 302
    assert [r.url for r in prefix_app.state.prefix_buffer.take()] == ["media.example.com/a@b/c%40d/ep.mp3"]


async def test_a_browser_navigation_goes_only_to_the_tenants_enclosure_hosts(  # type: ignore[no-untyped-def]
    prefix_app: FastAPI, show, client: httpx.AsyncClient
) -> None:
    directory: TenantDirectory = prefix_app.state.prefix_directory
    tenant = show.team.tenant_id
    added = await client.post(
        f"/v1/podcasts/{show.podcast_id}/episodes",
        json={"title": "Chained", "audio_url": "https://dts.podtrac.com/redirect.mp3/cdn.example.net/s/e9.mp3"},
        headers=show.team.auth("owner"),
    )
    assert added.status_code == 201, added.text
    # the new episode's hosts are known within a second, like a new tenant
    assert await until(lambda: directory.serves(tenant, "dts.podtrac.com/redirect.mp3/cdn.example.net/x")) < 1.0
    before = refused("foreign_host")
    episode = show.audio_urls[0].removeprefix("https://")

    async def get(url: str, headers: dict[str, str]) -> int:
        async with asgi_client(prefix_app) as http:
            return (await http.get(f"/p/{show.team.slug}/{url}", headers=headers)).status_code

    # a link someone clicked: only to the hosts the tenant's episodes use, through a prefix chain too
    assert await get(episode, BROWSER) == 302
    assert await get("dts.podtrac.com/redirect.mp3/cdn.example.net/s/e9.mp3", BROWSER) == 302
    assert await get("MEDIA.example.com/other.mp3", BROWSER) == 302
    for foreign in (
        "evil.example/login.html",
        "media.example.com.evil.example/login.html",
        "dts.podtrac.com/redirect.mp3/evil.example/login.html",  # podtrac would send the browser on to evil.example
        "media.example.com:8443/ep.mp3",
    ):
        assert await get(foreign, BROWSER) == 404, foreign
    assert refused("foreign_host") == before + 4
    # players and a browser's audio element (a Range) are redirected anywhere, as before, and recorded
    prefix_app.state.prefix_buffer.take()
    assert await get("evil.example/ep.mp3", {"User-Agent": PLAYER, "Accept": "*/*"}) == 302
    assert await get("evil.example/ep.mp3", {**BROWSER, "Range": "bytes=0-"}) == 302
    assert await get("evil.example/ep.mp3", {"User-Agent": PLAYER}) == 302
    assert len(prefix_app.state.prefix_buffer.take()) == 3


async def test_the_definer_functions_reveal_slugs_and_enclosure_hosts_only(  # type: ignore[no-untyped-def]
    db: Database, owner_db: Database, make_tenant
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    podcast = uuid.uuid4()
    async with owner_db.transaction() as session:
        await session.execute(
            text("INSERT INTO podcasts (tenant_id, id, name) VALUES (:t, :p, 'Show')"), {"t": tenant.id, "p": podcast}
        )
        for guid, url in enumerate((
            "https://dts.podtrac.com/redirect.mp3/CDN.example.net:8443/s/e1.mp3?src=rss",
            "https://op3.dev/e/https%3A%2F%2Fhost.example%2Fe2.mp3",
            "https://plain.example/e3.mp3",
            None,
        )):  # fmt: skip
            await session.execute(
                text(
                    "INSERT INTO episodes (tenant_id, podcast_id, guid, title, audio_url) VALUES (:t, :p, :g, 'E', :u)"
                ),
                {"t": tenant.id, "p": podcast, "g": str(guid), "u": url},
            )
    async with db.transaction() as session:  # the runtime role, no tenant context: it sees no rows itself
        assert (await session.execute(text("SELECT count(*) FROM tenants"))).scalar_one() == 0
        assert (await session.execute(text("SELECT count(*) FROM episodes"))).scalar_one() == 0
        slugs = dict((await session.execute(text("SELECT slug, id FROM measurement_prefix_tenants()"))).all())
        hosts = (await session.execute(text("SELECT tenant_id, host FROM measurement_enclosure_hosts(NULL)"))).all()
        mine = (
            await session.execute(
                text("SELECT host FROM measurement_enclosure_hosts(CAST(:t AS uuid[]))"), {"t": [other.id]}
            )
        ).all()
    assert slugs == {tenant.slug: tenant.id, other.slug: other.id}
    assert {row.tenant_id for row in hosts} == {tenant.id} and mine == []
    # every host of each chain (the file name and query never), lower-cased, with its port
    assert {row.host for row in hosts} == {
        "dts.podtrac.com", "redirect.mp3", "cdn.example.net:8443", "op3.dev", "host.example", "plain.example"
    }  # fmt: skip


async def test_a_missed_notification_is_caught_by_the_periodic_reload(  # type: ignore[no-untyped-def]
    db: Database, owner_url: str, make_tenant
) -> None:
    directory = TenantDirectory(db.url, refresh_seconds=1.0)
    await directory.start()
    try:
        slug, tenant = f"quiet-{uuid.uuid4().hex[:8]}", uuid.uuid4()
        with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # triggers off: no notification is sent
            conn.execute("INSERT INTO tenants (id, name, slug) VALUES (%s, 'Quiet', %s)", (tenant, slug))
        await until(lambda: directory.tenant_of(slug) == tenant, within=3.0)
        # a tenant deleted with TRUNCATE (no row triggers) is forgotten at once too
        other = await make_tenant()
        await until(lambda: directory.tenant_of(other.slug) is not None)
        with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
            conn.execute("TRUNCATE tenants CASCADE")
        await until(lambda: directory.tenant_of(other.slug) is None and directory.tenant_of(slug) is None)
    finally:
        await directory.stop()


async def test_the_directory_answers_through_a_database_restart_and_catches_up(
    settings: Settings, tmp_path: Path
) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", database="directory")
    owner_url = server.start()
    directories: list[TenantDirectory] = []
    try:
        local = settings.model_copy(update={"database_url": owner_url, "app_database_url": None, "data_dir": tmp_path})
        runtime_url = migrations.migrate(local, owner_url)
        snapshot = tmp_path / "prefix-directory.json"

        def add_tenant(slug: str) -> uuid.UUID:
            tenant = uuid.uuid4()
            with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
                conn.execute("INSERT INTO tenants (id, name, slug) VALUES (%s, 'Blip FM', %s)", (tenant, slug))
            return tenant

        first = add_tenant("before-fm")
        directory = TenantDirectory(runtime_url, snapshot=snapshot)
        directories.append(directory)
        await directory.start()
        assert directory.listening and directory.tenant_of("before-fm") == first

        server.stop()  # the database goes away: the directory answers from memory meanwhile
        await until(lambda: not directory.listening)
        assert directory.tenant_of("before-fm") == first and directory.tenant_of("nobody") is None

        # a process starting now begins from the snapshot the last load saved ...
        restarted = TenantDirectory(runtime_url, snapshot=snapshot)
        # ... and one without any refuses no slug until its first load (no playback outage)
        fresh = TenantDirectory(runtime_url, snapshot=tmp_path / "none" / "prefix-directory.json")
        directories += [restarted, fresh]
        await restarted.start(wait_seconds=2.0)
        await fresh.start(wait_seconds=2.0)
        assert restarted.tenant_of("before-fm") == first and not restarted.listening
        assert not fresh.loaded

        server.start()
        second = add_tenant("after-fm")
        for each in directories:  # each reconnects by itself (backoff of at most 10 s) and reloads
            await until(lambda each=each: each.tenant_of("after-fm") == second, within=15.0)
            assert each.listening and each.tenant_of("before-fm") == first
        third = add_tenant("later-fm")  # and follows changes again
        await until(lambda: directory.tenant_of("later-fm") == third, within=1.0)
    finally:
        for each in directories:
            await each.stop()
        server.stop()


async def test_a_live_server_refuses_unknown_slugs_and_redirects_a_new_tenant_within_a_second(  # type: ignore[no-untyped-def]
    live_server: str, make_tenant
) -> None:
    async with httpx.AsyncClient(base_url=live_server, headers={"User-Agent": PLAYER}) as http:
        unknown = await http.get("/p/nobody-knows/evil.example/phish.html")
        assert unknown.status_code == 404 and "location" not in unknown.headers
        tenant = await make_tenant()
        started = time.monotonic()
        while (answer := await http.head(f"/p/{tenant.slug}/media.example.com/ep.mp3")).status_code == 404:
            assert time.monotonic() - started < 1.0, "the new tenant's slug is not known within a second"
            await asyncio.sleep(0.01)
        assert answer.status_code == 302
