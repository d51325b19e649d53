"""Benchmark: syncing a 2,000-episode feed (first sync, and a re-sync of the unchanged document).

Target (issue 4): a 2,000-episode feed syncs in under 3 s. Reference, measured in the same run:
``feedparser.parse`` of the same bytes — the parse alone, which no sync can beat.
Uses ``DATABASE_URL`` when set, else a throw-away embedded PostgreSQL. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import feedparser

EPISODES = 2000


def make_feed(n: int) -> bytes:
    start = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)
    items = []
    for i in range(n, 0, -1):
        published = format_datetime(start + timedelta(days=i))
        items.append(
            f"""<item><title>Episode {i}: a conversation about measurement</title>
<guid isPermaLink="false">bench-{i}</guid><pubDate>{published}</pubDate>
<description><![CDATA[<p>Show notes for episode {i} with <a href="https://example.com/{i}">links</a>.</p>]]></description>
<enclosure url="https://cdn.example.com/audio/{i}.mp3" length="{30_000_000 + i}" type="audio/mpeg"/>
<itunes:duration>{(i % 3) + 1}:0{i % 10}:1{i % 10}</itunes:duration><itunes:episode>{i}</itunes:episode></item>"""
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel><title>Bench Show</title>'
        "<link>https://example.com</link><description>A long-running show</description>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


async def run(owner_url: str, feed_url: str) -> dict[str, float]:
    from castmetrics.auth.principal import Actor
    from castmetrics.catalog import service as catalog
    from castmetrics.catalog.schemas import PodcastIn
    from castmetrics.config import Settings
    from castmetrics.db import migrate
    from castmetrics.db.session import Database
    from castmetrics.identity import service as identity
    from castmetrics.tenancy.schemas import TenantCreate

    settings = Settings(database_url=owner_url, allow_private_fetch=True, app_role="castmetrics_bench_app")
    runtime_url = await asyncio.to_thread(migrate.migrate, settings, owner_url)
    db = Database(runtime_url, pool_size=2)
    tenant_id = uuid.uuid4()
    async with db.tenant_transaction(tenant_id) as session:
        tenant = await identity.provision_tenant(
            session,
            TenantCreate(name="Bench", slug=f"bench-{tenant_id.hex[:8]}", subscription_tier="enterprise"),
            Actor.system("bench"),
            tenant_id=tenant_id,
        )
        podcast = await catalog.create_podcast(
            session,
            tenant,
            Actor.system("bench"),
            PodcastIn(name="Bench", rss_feed_url=feed_url),  # type: ignore[arg-type]
        )
    started = time.perf_counter()
    first = await catalog.sync_podcast(db, settings, tenant_id, podcast.id, "cli")
    first_s = time.perf_counter() - started
    async with db.tenant_transaction(tenant_id) as session:  # force a full fetch of the same bytes
        podcast = await catalog.get_podcast(session, podcast.id)
        podcast.feed_etag = podcast.feed_last_modified = None
    started = time.perf_counter()
    second = await catalog.sync_podcast(db, settings, tenant_id, podcast.id, "cli")
    resync_s = time.perf_counter() - started
    await db.dispose()
    assert (first.created, second.unchanged) == (EPISODES, EPISODES), (first, second)
    return {"first_sync_s": first_s, "resync_unchanged_s": resync_s}


def main() -> None:
    from castmetrics.observability import configure_logging

    configure_logging("WARNING", json=True)
    body = make_feed(EPISODES)
    with tempfile.TemporaryDirectory(prefix="castmetrics-bench-") as tmp:
        root = Path(tmp)
        (root / "feed.xml").write_bytes(body)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        feed_url = f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
        parse_times = []
        for _ in range(3):
            started = time.perf_counter()
            feedparser.parse(body)
            parse_times.append(time.perf_counter() - started)
        reference = sorted(parse_times)[1]
        external = os.environ.get("DATABASE_URL")
        if external:
            result = asyncio.run(run(external, feed_url))
        else:
            from castmetrics.db.embedded import EmbeddedPostgres

            pg = EmbeddedPostgres(root / "pg", database="bench")
            try:
                result = asyncio.run(run(pg.start(), feed_url))
            finally:
                pg.stop()
        server.shutdown()
    print(
        json.dumps(
            {
                "benchmark": "feed_sync_2000_episodes",
                "feed_bytes": len(body),
                "first_sync_s": round(result["first_sync_s"], 3),
                "resync_unchanged_s": round(result["resync_unchanged_s"], 3),
                "reference_feedparser_parse_s": round(reference, 3),
                "ratio_first_sync_to_parse": round(result["first_sync_s"] / reference, 2),
                "target_s": 3,
                "target_met": result["first_sync_s"] < 3 and result["resync_unchanged_s"] < 3,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
