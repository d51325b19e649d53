"""Benchmark: the analytics API over rollups, against the same answers computed from raw events.

Data (one run, a fresh PostgreSQL as in ``bench/ingest.py``: a throw-away embedded server, or a scratch
database on the server ``DATABASE_URL`` names), generated server-side in SQL as the owner:

* one large tenant: 50 podcasts of 100 episodes each (published over the last ~600 days, so about
  two thirds launch inside the window), 20,000,000 listener events and 2,000,000 prefix download
  requests over the last 400 days; popularity is skewed (Zipf over podcasts, log-normal over episodes),
  traffic peaks at an episode's launch and decays, listeners come from a pool of 1,000,000 ids with
  heavy listeners (a power law), clients from a pool of 400,000 with stable app, device and country;
  requests are mostly GET, some HEAD, Apple-style two-byte probes, partial ranges and ~6% bots;
* 20 small tenants: one podcast of 20 episodes, 50,000 events and 5,000 requests each.

``--scale`` multiplies the event and request counts (``--scale 0.02`` for a quick check). Then the
rollups (listener and download kinds) are rebuilt for all 400 days of every tenant with
``rollups.rebuild`` in the tenant's RLS context, and the download HyperLogLog sketches (normally fed by
the recorder) are filled from the generated requests, keyed by the client number.

Measured through HTTP against ``castmetrics serve`` (one process, the analytics answer cache off), one
client sending ~200 requests in sequence per route, the podcast and the date window changing between
requests: p50/p95/p99 latency of

1. a podcast's 90-day daily time series of downloads, plays and unique listeners;
2. a podcast's 90-day summary;
3. the tenant's 90-day breakdown by country, a podcast's by app;
4. the tenant's 365-day summary: its ``unique_listeners`` item (distinct listeners over the whole year;
   asked with ``metric=unique_listeners``, which versions of the route without that parameter ignore),
   and the summary as a whole;

and, without targets, the tenant's top episodes by downloads over 90 days, a podcast's launch curves
and a podcast's hourly plays over 7 days in America/New_York. For each, the same answer is computed
in-process from raw events (``from_raw=True``, a few runs) and compared with the HTTP answer (IAB
``listeners`` of a multi-day period are a HyperLogLog estimate on both paths and are left out of the
comparison); ratio = raw median / HTTP p50 (and / p95).

Targets: p95 <= 50 ms and raw/p50 >= 50x for 1-4. Run ``python -m bench.analytics`` from the repository
root; prints a table and writes ``bench/results/analytics.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

from bench import ingest
from bench.ingest import APP_ROLE, PASSWORD, _peak_rss_mb, _verdict, fresh_database

RESULTS = Path(__file__).resolve().parent / "results" / "analytics.json"
DAYS = 400  # of traffic, up to now
PUBLISH_DAYS = 600  # episodes are published over this many days, up to now
BIG = {"podcasts": 50, "episodes": 100, "events": 20_000_000, "requests": 2_000_000, "listeners": 1_000_000}
SMALL = {"podcasts": 1, "episodes": 20, "events": 50_000, "requests": 5_000, "listeners": 20_000}
CLIENTS = {"big": 400_000, "small": 8_000}  # download clients per tenant (pool sizes)
# What ``rollups rebuild`` writes (download sketches come from the recorder: generated, never rebuilt).
ROLLUP_TABLES = (
    "listener_daily", "listener_hourly", "listener_monthly", "listener_totals_monthly", "listener_keys",
    "listener_key_counters", "download_daily", "download_breakdown_daily", "download_listeners_daily",
    "download_hourly", "download_totals_monthly",
)  # fmt: skip
BOT_CLIENTS = 200
BOT_SHARE = 0.06  # of fetches
HEAD_SHARE = 0.04  # fetches preceded by a HEAD
PARTIAL_SHARE = 0.05  # fetches of a bounded range too short to count (rule 4)
TARGETS = {"p95_ms": 50.0, "raw_ratio": 50.0}
NEW_YORK = "America/New_York"

# Podcast apps (OPAWG names; None: unrecognised), share of clients, platform, how they fetch:
# "probe" = bytes=0-1 then bytes=0-, "range" = bytes=0-, "plain" = no Range.
APPS: tuple[tuple[str | None, float, str, str], ...] = (
    ("Apple Podcasts", 0.30, "ios", "probe"),
    ("Spotify", 0.22, "any", "plain"),
    ("Overcast", 0.05, "ios", "range"),
    ("Pocket Casts", 0.04, "any", "plain"),
    ("Podcast Addict", 0.04, "android", "range"),
    ("CastBox", 0.03, "any", "range"),
    ("YouTube Music", 0.03, "any", "plain"),
    ("Amazon Music", 0.025, "any", "plain"),
    ("iHeartRadio", 0.02, "any", "plain"),
    ("Alexa-enabled device", 0.02, "speaker", "plain"),
    ("Castro", 0.01, "ios", "plain"),
    ("AntennaPod", 0.01, "android", "range"),
    ("Deezer", 0.01, "any", "plain"),
    ("Goodpods", 0.01, "any", "plain"),
    ("Podbean", 0.01, "any", "plain"),
    ("Player FM", 0.01, "any", "range"),
    ("Audible", 0.01, "any", "plain"),
    ("TuneIn", 0.01, "any", "plain"),
    ("Podcast Republic", 0.005, "android", "range"),
    ("Snipd", 0.005, "any", "plain"),
    (None, 0.03, "web", "range"),  # browsers without a known web player
    (None, 0.03, "any", "plain"),  # user agents nobody recognises
)
# (platform, device, device category, os, share within the platform)
DEVICES: tuple[tuple[str, str, str, str, float], ...] = (
    ("ios", "Apple iPhone", "mobile", "iOS", 0.85),
    ("ios", "Apple iPad", "mobile", "iPadOS", 0.07),
    ("ios", "Apple Watch", "watch", "watchOS", 0.02),
    ("ios", "Apple Computer", "computer", "macOS", 0.06),
    ("android", "Android Phone", "mobile", "Android", 0.9),
    ("android", "Android Tablet", "mobile", "Android", 0.1),
    ("any", "Apple iPhone", "mobile", "iOS", 0.45),
    ("any", "Android Phone", "mobile", "Android", 0.38),
    ("any", "Windows Computer", "computer", "Windows", 0.08),
    ("any", "Apple Computer", "computer", "macOS", 0.05),
    ("any", "Smart Car", "auto", "Android", 0.02),
    ("any", "Other Smart TV", "smart_tv", "Linux", 0.02),
    ("speaker", "Amazon Smart Speaker", "smart_speaker", "Fire OS", 1.0),
    ("web", "Windows Computer", "computer", "Windows", 0.5),
    ("web", "Apple Computer", "computer", "macOS", 0.3),
    ("web", "Google Chromebook", "computer", "ChromeOS", 0.05),
    ("web", "Other Computer", "computer", "Linux", 0.15),
)
BROWSERS = (("Chrome", 0.6), ("Safari", 0.25), ("Firefox", 0.1), ("Edge", 0.05))
COUNTRIES: tuple[tuple[str | None, float], ...] = (
    ("US", 0.42), ("GB", 0.08), ("CA", 0.05), ("AU", 0.05), ("DE", 0.05), ("IN", 0.04), ("BR", 0.03),
    ("FR", 0.03), ("NL", 0.02), ("SE", 0.02), ("ES", 0.02), ("IT", 0.02), ("MX", 0.02), ("IE", 0.015),
    ("NZ", 0.01), ("JP", 0.01), ("ZA", 0.01), ("NO", 0.01), ("DK", 0.01), ("BE", 0.01), ("CH", 0.01),
    ("AT", 0.01), ("PL", 0.01), ("PH", 0.01), ("FI", 0.005), ("SG", 0.005), ("NG", 0.005), ("AR", 0.005),
    ("CL", 0.005), ("CO", 0.005), ("KR", 0.005), ("PT", 0.005), (None, 0.01),
)  # fmt: skip
BOTS = (
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Spotify/1.0 (cache service)",
    "PodcastIndex.org/1.0",
    "ListenNotes/2.0",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Podscan Bot/1.0",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
)
EVENT_SHARES = (  # (type, cumulative share): play 28%, progress 24%, pause 10%, …
    ("play", 0.28), ("progress", 0.52), ("pause", 0.62), ("resume", 0.70), ("seek", 0.75), ("skip", 0.80),
    ("complete", 0.90), ("download", 1.0),
)  # fmt: skip


def _log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _pick(items: list[tuple[Any, float]], rng: random.Random) -> Any:
    return rng.choices([item for item, _ in items], weights=[weight for _, weight in items])[0]


def code_fingerprint() -> dict[str, Any]:
    """Where castmetrics was imported from and a digest of its Python files and migrations (the
    source may change between runs: results name the code they measured)."""
    import hashlib

    import castmetrics

    root = Path(castmetrics.__file__).resolve().parent
    digest = hashlib.sha256()
    files = sorted(root.rglob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    newest = max(path.stat().st_mtime for path in files)
    return {
        "path": str(root),
        "sha256": digest.hexdigest()[:16],
        "newest_file": datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds"),
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


# --- setup: tenants, users, podcasts (through the services), episodes (SQL) ------------------------


async def _setup_tenants(owner_url: str, runtime_url: str, small_count: int) -> list[dict[str, Any]]:
    """The large tenant (enterprise, with a verified owner) and the small ones (pro), with podcasts."""
    from castmetrics.auth.principal import Actor
    from castmetrics.catalog import service as catalog
    from castmetrics.catalog.schemas import PodcastIn
    from castmetrics.config import Settings
    from castmetrics.db.session import Database
    from castmetrics.identity import service as identity
    from castmetrics.tenancy.schemas import TenantCreate

    settings = Settings(database_url=owner_url, app_role=APP_ROLE, bcrypt_rounds=4)
    actor = Actor.system("bench")
    db = Database(runtime_url, pool_size=1, max_overflow=0)
    tenants = []
    try:
        for index in range(1 + small_count):
            big = index == 0
            tenant_id = uuid.uuid4()
            slug = f"bench-big-{tenant_id.hex[:6]}" if big else f"bench-small{index:02d}-{tenant_id.hex[:6]}"
            spec = BIG if big else SMALL
            async with db.tenant_transaction(tenant_id) as session:
                tenant = await identity.provision_tenant(
                    session,
                    TenantCreate(
                        name="Bench Network" if big else f"Small Network {index}",
                        slug=slug,
                        subscription_tier="enterprise" if big else "pro",
                    ),
                    actor,
                    tenant_id=tenant_id,
                )
                email = f"owner@{slug}.example.com"
                if big:
                    await identity.create_user(
                        session, settings, tenant_id, email=email, name="Bench Owner", password=PASSWORD,
                        role_names=["owner"], actor=actor, email_verified=True,
                    )  # fmt: skip
                podcasts = [
                    (await catalog.create_podcast(session, tenant, actor, PodcastIn(name=f"Show {n + 1}"))).id
                    for n in range(spec["podcasts"])
                ]
            tenants.append(
                {
                    "index": index,
                    "tenant_id": str(tenant_id),
                    "slug": slug,
                    "email": email if big else None,
                    "podcast_ids": [str(p) for p in podcasts],  # by popularity, most popular first
                }
            )
    finally:
        await db.dispose()
    return tenants


def _episodes(tenants: list[dict[str, Any]], cutoff: datetime, rng: random.Random) -> list[tuple[Any, ...]]:
    """Episode rows: each podcast publishes at a steady pace over PUBLISH_DAYS up to ``cutoff``."""
    rows = []
    for tenant in tenants:
        big = tenant["index"] == 0
        count = BIG["episodes"] if big else SMALL["episodes"]
        pace = timedelta(days=PUBLISH_DAYS / count)
        for rank, podcast_id in enumerate(tenant["podcast_ids"]):
            popularity = (rank + 1) ** -1.1  # Zipf over podcasts
            phase = rng.random()
            hour = rng.choice((5, 6, 9, 10, 11, 14, 16))
            # Spread listeners of different shows over the pool (heavy listeners differ per show).
            shift = rng.randrange(BIG["listeners"] if big else SMALL["listeners"])
            for number in range(1, count + 1):
                published = cutoff - timedelta(days=PUBLISH_DAYS) + (number - 1 + phase) * pace
                published = published.replace(hour=hour, minute=rng.randrange(60), second=0, microsecond=0)
                published = min(published, cutoff - timedelta(hours=2))
                duration = rng.randrange(20 * 60, 95 * 60)
                quality = math.exp(rng.gauss(0, 0.7))  # log-normal: some episodes are hits
                episode_id = uuid.uuid4()
                rows.append(
                    (
                        uuid.UUID(tenant["tenant_id"]),
                        episode_id,
                        uuid.UUID(podcast_id),
                        f"bench:{podcast_id}:{number}",
                        f"Episode {number}",
                        number,
                        published,
                        duration,
                        f"https://cdn.bench.example/{tenant['slug']}/show-{rank + 1}/episode-{number}.mp3",
                        "audio/mpeg",
                        duration * 16_000 + 60_000,  # 128 kbit/s and the ID3 tag
                        popularity * quality,
                        shift,
                    )
                )
    return rows


# --- generation: listener events, download requests, sketches (SQL as the owner) ------------------

_HELPERS = [
    "DROP SCHEMA IF EXISTS bench_gen CASCADE",
    "CREATE SCHEMA bench_gen",
    """
    CREATE TABLE bench_gen.episodes (
        tenant_id uuid, episode_id uuid, podcast_id uuid, base float8, published_at timestamptz,
        duration int, url text, shift int)
    """,
    """
    CREATE TABLE bench_gen.tenants (
        tenant_id uuid PRIMARY KEY, tidx int, events_total float8, requests_total float8, listener_pool int,
        client_pool int, events_k float8, fetch_k float8)
    """,
    """
    CREATE TABLE bench_gen.clients (
        c int PRIMARY KEY, app text, style text, device text, device_category text, os text, browser text,
        country text, user_agent text, agent_type text)
    """,
    "CREATE TABLE bench_gen.bots (b int PRIMARY KEY, user_agent text, country text)",
    "CREATE TABLE bench_gen.days (day date PRIMARY KEY, day_start timestamptz, factor float8)",
    # Days from publication to the middle of the day (0 on the day of publication), at most 1,000.
    """
    CREATE FUNCTION bench_gen.age(published timestamptz, day_start timestamptz) RETURNS float8
    LANGUAGE sql STABLE AS $$
        SELECT least(greatest(0, extract(epoch FROM day_start - published)::float8 / 86400 + 0.5), 1000)
    $$
    """,
    # An episode's traffic on a day (before the day's factor): its base popularity times the launch
    # curve (a spike decaying over days, a slower tail, the back catalogue) times the part of the day
    # it was out (and, today, the part of the day gone by).
    """
    CREATE FUNCTION bench_gen.weight(base float8, published timestamptz, day_start timestamptz, cutoff timestamptz)
    RETURNS float8 LANGUAGE sql STABLE AS $$
        SELECT CASE WHEN published >= least(day_start + interval '86400 seconds', cutoff) THEN 0::float8 ELSE
            base * (exp(-bench_gen.age(published, day_start) / 2.5)
                    + 0.35 * exp(-bench_gen.age(published, day_start) / 21.0) + 0.04)
            * extract(epoch FROM least(day_start + interval '86400 seconds', cutoff)
                                 - greatest(day_start, published))::float8 / 86400
        END
    $$
    """,
]

_EVENT_TYPE = "CASE " + " ".join(f"WHEN g.u2 < {share} THEN '{name}'" for name, share in EVENT_SHARES[:-1])
_EVENT_TYPE += f" ELSE '{EVENT_SHARES[-1][0]}' END"
# progress and complete carry listened_seconds, so does half of pause
_EVENT_DATA = (
    "CASE WHEN g.u2 >= 0.28 AND g.u2 < 0.52 THEN jsonb_build_object('listened_seconds', floor(g.u3 * g.duration)::int) "
    "WHEN g.u2 >= 0.80 AND g.u2 < 0.90 THEN jsonb_build_object('listened_seconds', "
    "floor(g.duration * (0.9 + 0.1 * g.u3))::int) "
    "WHEN g.u2 >= 0.52 AND g.u2 < 0.62 AND g.u3 < 0.5 THEN jsonb_build_object('listened_seconds', "
    "floor(g.u3 * 2 * g.duration)::int) END"
)
# The episodes out on the day, with how many rows each gets (the expectation, stochastically rounded).
_PER_EPISODE = """
    SELECT e.tenant_id, t.tidx, e.episode_id, e.podcast_id, e.url, e.duration, e.shift,
           t.listener_pool, t.client_pool,
           greatest(%(start)s, e.published_at) AS lo, least(%(end)s, %(cutoff)s) AS hi,
           floor(t.{k} * %(factor)s * bench_gen.weight(e.base, e.published_at, %(start)s, %(cutoff)s) + random())::int
               AS n
    FROM bench_gen.episodes e JOIN bench_gen.tenants t ON t.tenant_id = e.tenant_id
    WHERE e.published_at < least(%(end)s, %(cutoff)s)
"""
LISTENER_DAY = f"""
    INSERT INTO listener_events (tenant_id, id, episode_id, listener_id, event_type, event_data, occurred_at)
    SELECT g.tenant_id, gen_random_uuid(), g.episode_id,
           'listener-' || mod(floor(g.listener_pool * power(g.u1, 2.2))::bigint + g.shift, g.listener_pool),
           {_EVENT_TYPE}, {_EVENT_DATA}, g.lo + g.u4 * (g.hi - g.lo)
    FROM (
        SELECT w.*, random() AS u1, random() AS u2, random() AS u3, random() AS u4
        FROM ({_PER_EPISODE.format(k="events_k")}) w CROSS JOIN generate_series(1, w.n)
    ) g
"""
# Each fetch is one to three requests (a HEAD first, an Apple-style probe, the fetch itself); the rows
# that feed the sketches (matched, not a bot, GET, not a probe) come back with their client number.
DOWNLOAD_DAY = f"""
    WITH x AS MATERIALIZED (
        SELECT f.*, f.ub < {BOT_SHARE} AS bot,
               CASE WHEN f.ub < {BOT_SHARE} THEN floor(f.uc * {BOT_CLIENTS})::int
                    ELSE floor(f.client_pool * power(f.uc, 2.0))::int END AS c,
               f.lo + f.ut * (f.hi - f.lo) AS at
        FROM (
            SELECT w.*, random() AS ub, random() AS uc, random() AS um, random() AS ut, random() AS uh,
                   random() AS up
            FROM ({_PER_EPISODE.format(k="fetch_k")}) w CROSS JOIN generate_series(1, w.n)
        ) f
    ),
    r AS MATERIALIZED (
        SELECT x.tenant_id, x.tidx, x.episode_id, x.podcast_id, x.url, x.bot, x.c, v.method, v.range_header,
               v.range_bytes, v.is_probe,
               least(x.at + v.seq * interval '0.8 seconds', x.hi - interval '1 microsecond') AS at,
               coalesce(cl.user_agent, b.user_agent) AS user_agent, cl.agent_type, cl.app, cl.device,
               cl.device_category, cl.os, cl.browser, coalesce(cl.country, b.country) AS country
        FROM x
        LEFT JOIN LATERAL (SELECT * FROM bench_gen.clients WHERE NOT x.bot AND c = x.c OFFSET 0) cl ON true
        LEFT JOIN LATERAL (SELECT * FROM bench_gen.bots WHERE x.bot AND b = x.c OFFSET 0) b ON true
        CROSS JOIN LATERAL (VALUES
            (0, 'HEAD', NULL::text, NULL::bigint, false, NOT x.bot AND x.uh < {HEAD_SHARE}),
            (1, 'GET', 'bytes=0-1', 2::bigint, true, NOT x.bot AND cl.style = 'probe'),
            (2, CASE WHEN x.bot AND x.um < 0.3 THEN 'HEAD' ELSE 'GET' END,
                CASE WHEN x.bot THEN NULL WHEN x.up < {PARTIAL_SHARE} THEN 'bytes=0-524287'
                     WHEN cl.style IN ('probe', 'range') THEN 'bytes=0-' END,
                CASE WHEN NOT x.bot AND x.up < {PARTIAL_SHARE} THEN 524288::bigint END, false, true)
        ) AS v(seq, method, range_header, range_bytes, is_probe, present)
        WHERE v.present
    ),
    ins AS (
        INSERT INTO download_requests (tenant_id, id, requested_at, episode_id, url, client_hash, user_agent,
            method, range_header, range_bytes, is_probe, is_bot, agent_type, app, device, device_category, os,
            browser, country)
        SELECT tenant_id, gen_random_uuid(), at, episode_id, url,
               decode(md5(tidx || ':' || CASE WHEN bot THEN 'bot' ELSE 'c' END || c || ':' || %(day)s), 'hex'),
               user_agent, method, range_header, range_bytes, is_probe, bot,
               CASE WHEN bot THEN 'bot' ELSE agent_type END, app, device, device_category, os, browser, country
        FROM r
    )
    SELECT tenant_id, episode_id, podcast_id, c FROM r WHERE NOT bot AND method = 'GET' AND NOT is_probe
"""


def _client_rows(count: int, rng: random.Random) -> list[tuple[Any, ...]]:
    """Download clients with a stable app, device, country and user agent."""
    devices: dict[str, list[tuple[tuple[str, str, str], float]]] = defaultdict(list)
    for plat, device, category, system, share in DEVICES:
        devices[plat].append(((device, category, system), share))
    apps = [((name, plat, fetch), share) for name, share, plat, fetch in APPS]
    rows = []
    for c in range(count):
        name, plat, fetch = _pick(apps, rng)
        device, category, system = _pick(devices[plat], rng)
        browser = _pick(list(BROWSERS), rng) if plat == "web" else None
        agent = f"{name or browser or 'Player'}/{rng.randrange(1, 30)}.{rng.randrange(10)} ({system}; {device})"
        agent_type = "browser" if plat == "web" else "app" if name else None
        rows.append((c, name, fetch, device, category, system, browser, _pick(list(COUNTRIES), rng), agent, agent_type))
    return rows


def _setup_generation(conn: psycopg.Connection, tenants: list[dict[str, Any]], episodes: list[tuple[Any, ...]],
                      scale: float, cutoff: datetime, rng: random.Random) -> None:  # fmt: skip
    """Helper tables in the schema ``bench_gen`` (dropped after generation), and the normalisers that
    make each tenant's expected totals the targets."""
    for statement in _HELPERS:
        conn.execute(statement)
    with conn.cursor() as cursor:
        with cursor.copy("COPY bench_gen.episodes FROM STDIN") as copy:
            for row in episodes:
                copy.write_row(
                    (row[0], row[1], row[2], row[11], row[6], row[7], row[8].removeprefix("https://"), row[12])
                )
        with cursor.copy("COPY bench_gen.tenants (tenant_id, tidx, events_total, requests_total, listener_pool, "
                         "client_pool) FROM STDIN") as copy:  # fmt: skip
            for tenant in tenants:
                spec, pool = (BIG, CLIENTS["big"]) if tenant["index"] == 0 else (SMALL, CLIENTS["small"])
                totals = (spec["events"] * scale, spec["requests"] * scale, spec["listeners"], pool)
                copy.write_row((tenant["tenant_id"], tenant["index"], *totals))
        with cursor.copy("COPY bench_gen.clients FROM STDIN") as copy:
            for row in _client_rows(max(CLIENTS.values()), rng):
                copy.write_row(row)
        with cursor.copy("COPY bench_gen.bots FROM STDIN") as copy:
            for b in range(BOT_CLIENTS):
                copy.write_row((b, BOTS[b % len(BOTS)], rng.choice(("US", "US", "DE", "IE", "NL"))))
        today = cutoff.date()
        with cursor.copy("COPY bench_gen.days FROM STDIN") as copy:
            for i in range(DAYS):
                day = today - timedelta(days=DAYS - 1 - i)
                growth = 0.75 + 0.5 * i / (DAYS - 1)
                weekend = 0.85 if day.isoweekday() >= 6 else 1.0
                copy.write_row((day, datetime.combine(day, datetime.min.time(), tzinfo=UTC), growth * weekend))
    conn.execute("ANALYZE bench_gen.episodes, bench_gen.tenants, bench_gen.clients, bench_gen.bots, bench_gen.days")
    # Requests per fetch: a HEAD first now and then, a probe for probing apps (clients weighted as drawn).
    probing = conn.execute(
        "SELECT avg((style = 'probe')::int) FROM bench_gen.clients WHERE c < %s", (CLIENTS["big"],)
    ).fetchone()
    per_fetch = BOT_SHARE + (1 - BOT_SHARE) * (1 + HEAD_SHARE + float(probing[0] if probing else 0))
    conn.execute(
        """
        UPDATE bench_gen.tenants t SET events_k = t.events_total / s.total,
                                       fetch_k = t.requests_total / %(per_fetch)s / s.total
        FROM (SELECT e.tenant_id, sum(d.factor * bench_gen.weight(e.base, e.published_at, d.day_start, %(cutoff)s))
                     AS total
              FROM bench_gen.episodes e CROSS JOIN bench_gen.days d GROUP BY 1) s
        WHERE s.tenant_id = t.tenant_id
        """,
        {"per_fetch": per_fetch, "cutoff": cutoff},
    )
    conn.commit()


def _day_params(day: date, factor: float, cutoff: datetime) -> dict[str, Any]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return {"start": start, "end": start + timedelta(days=1), "cutoff": cutoff, "factor": factor, "day": str(day)}


def _generate_listener_events(owner_url: str, days: list[tuple[date, float]], cutoff: datetime,
                              progress: dict[str, Any]) -> None:  # fmt: skip
    with psycopg.connect(owner_url) as conn:
        conn.execute("SET synchronous_commit = off")
        for n, (day, factor) in enumerate(days, 1):
            progress["events"] += conn.execute(LISTENER_DAY, _day_params(day, factor, cutoff)).rowcount
            conn.commit()
            progress["event_days"] = n


def _generate_download_requests(owner_url: str, days: list[tuple[date, float]], cutoff: datetime,
                                progress: dict[str, Any]) -> None:  # fmt: skip
    """Requests per day, and each day's HyperLogLog sketches per scope (episode, podcast, tenant) from
    the client numbers, as the recorder would have fed them (its key is stable across days)."""
    from castmetrics.measurement import sketches

    with psycopg.connect(owner_url) as conn:
        conn.execute("SET synchronous_commit = off")
        for n, (day, factor) in enumerate(days, 1):
            started = time.perf_counter()
            with conn.cursor() as cursor:
                cursor.execute(DOWNLOAD_DAY, _day_params(day, factor, cutoff))
                feed = cursor.fetchall()
                progress["requests"] += conn.execute(
                    "SELECT count(*) FROM download_requests WHERE requested_at >= %(start)s AND requested_at < %(end)s",
                    _day_params(day, factor, cutoff),
                ).fetchone()[0]
                progress["db_seconds"] += time.perf_counter() - started
                started = time.perf_counter()
                by_scope: dict[tuple[uuid.UUID, uuid.UUID], Any] = {}
                for tenant_id, episode_id, podcast_id, client in feed:
                    key = str(client)
                    for scope in (episode_id, podcast_id, sketches.ALL):
                        sketch = by_scope.get((tenant_id, scope))
                        if sketch is None:
                            sketch = by_scope[(tenant_id, scope)] = sketches.new()
                        sketch.update(key)
                with cursor.copy("COPY download_sketches (tenant_id, day, scope_id, sketch) FROM STDIN") as copy:
                    for (tenant_id, scope), sketch in by_scope.items():
                        copy.write_row((tenant_id, day, scope, sketch.serialize_compact()))
                progress["sketches"] += len(by_scope)
                progress["sketch_seconds"] += time.perf_counter() - started
            conn.commit()
            progress["request_days"] = n
        # Each month's sketch: the union of its days', as the recorder's merges would have made it.
        with conn.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT tenant_id, scope_id, date_trunc('month', day)::date, array_agg(sketch) FROM download_sketches "
                "GROUP BY 1, 2, 3"
            )
            months = [(tenant_id, month, scope, sketches.merged(days)) for tenant_id, scope, month, days in cursor]
        monthly = "COPY download_sketches_monthly (tenant_id, month, scope_id, sketch) FROM STDIN"
        with conn.cursor() as cursor, cursor.copy(monthly) as copy:
            for row in months:
                copy.write_row(row)
        conn.commit()


def generate(owner_url: str, tenants: list[dict[str, Any]], scale: float, cutoff: datetime) -> dict[str, Any]:
    """Episodes, then listener events and download requests of DAYS days up to ``cutoff``, day by day,
    the two kinds on two connections at once."""
    rng = random.Random(20261125)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    episodes = _episodes(tenants, cutoff, rng)
    with psycopg.connect(owner_url) as conn:
        who = conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (who and who[0]):
            raise SystemExit("the owner must be a superuser or bypass RLS to generate every tenant's rows in SQL")
        conn.execute("SELECT setseed(0.42)")
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "COPY episodes (tenant_id, id, podcast_id, guid, title, episode_number, published_at, "
                "duration_seconds, audio_url, audio_type, audio_length_bytes) FROM STDIN"
            ) as copy,
        ):
            for row in episodes:
                copy.write_row(row[:11])
        first = cutoff.date() - timedelta(days=DAYS - 1)
        conn.execute("SELECT castmetrics_event_partitions_ensure(%s, %s)", (first, cutoff.date() + timedelta(days=1)))
        conn.commit()
        _setup_generation(conn, tenants, episodes, scale, cutoff, rng)
        days = [(row[0], row[1]) for row in conn.execute("SELECT day, factor FROM bench_gen.days ORDER BY day")]
    timings["setup_s"] = time.perf_counter() - started

    progress: dict[str, Any] = defaultdict(float)
    errors: list[BaseException] = []

    def run(target: Callable[..., None]) -> Callable[[], None]:
        def body() -> None:
            try:
                target(owner_url, days, cutoff, progress)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        return body

    started = time.perf_counter()
    threads = [threading.Thread(target=run(fn)) for fn in (_generate_listener_events, _generate_download_requests)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=15)
        elapsed = time.perf_counter() - started
        _log(
            f"  {elapsed:5.0f} s: events {int(progress['events']):,} ({int(progress['event_days'])}/{DAYS} days, "
            f"{progress['events'] / elapsed:,.0f}/s), requests {int(progress['requests']):,} "
            f"({int(progress['request_days'])}/{DAYS} days), sketches {int(progress['sketches']):,}"
        )
        if errors:
            break
    if errors:
        raise errors[0]
    timings["events_and_requests_s"] = time.perf_counter() - started
    timings["requests_db_s"] = progress["db_seconds"]
    timings["sketches_python_s"] = progress["sketch_seconds"]
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA bench_gen CASCADE")
        started = time.perf_counter()
        conn.execute(
            "VACUUM (ANALYZE) listener_events, download_requests, download_sketches, download_sketches_monthly, "
            "episodes, podcasts"
        )
        timings["vacuum_analyze_s"] = time.perf_counter() - started
    return {"episodes": len(episodes), "timings": timings}


def count_data(owner_url: str, tenants: list[dict[str, Any]]) -> dict[str, Any]:
    big = tenants[0]["tenant_id"]
    with psycopg.connect(owner_url) as conn:

        def one(query: str, *args: Any) -> Any:
            row = conn.execute(query, args).fetchone()
            value = row[0] if row else None
            if isinstance(value, Decimal):
                return int(value) if value == value.to_integral_value() else float(value)
            return value

        return {
            "tenants": len(tenants),
            "big_tenant": {
                "podcasts": len(tenants[0]["podcast_ids"]),
                "episodes": one("SELECT count(*) FROM episodes WHERE tenant_id = %s", big),
                "episodes_launched_in_window": one(
                    "SELECT count(*) FROM episodes WHERE tenant_id = %s AND published_at >= "
                    "(SELECT min(occurred_at) FROM listener_events WHERE tenant_id = %s)",
                    big,
                    big,
                ),
                "listener_events": one("SELECT count(*) FROM listener_events WHERE tenant_id = %s", big),
                "distinct_listeners": one("SELECT count(*) FROM listener_keys WHERE tenant_id = %s", big),
                "download_requests": one("SELECT count(*) FROM download_requests WHERE tenant_id = %s", big),
                "downloads_counted": one(
                    "SELECT sum(downloads) FROM download_listeners_daily WHERE tenant_id = %s AND scope_id = %s",
                    big,
                    str(uuid.UUID(int=0)),
                ),
                "top_podcast_share_of_events": one(
                    "SELECT round(max(n)::numeric / sum(n), 3) FROM (SELECT ep.podcast_id, count(*) AS n "
                    "FROM listener_events e JOIN episodes ep ON ep.tenant_id = e.tenant_id AND ep.id = e.episode_id "
                    "WHERE e.tenant_id = %s GROUP BY 1) x",
                    big,
                ),
            },
            "small_tenants": {
                "count": len(tenants) - 1,
                "listener_events": one("SELECT count(*) FROM listener_events WHERE tenant_id <> %s", big),
                "download_requests": one("SELECT count(*) FROM download_requests WHERE tenant_id <> %s", big),
            },
            "first_day": str(one("SELECT min(occurred_at)::date FROM listener_events")),
            "last_event": str(one("SELECT max(occurred_at) FROM listener_events")),
            "events_before_publication": one(
                "SELECT count(*) FROM listener_events e JOIN episodes ep ON ep.tenant_id = e.tenant_id "
                "AND ep.id = e.episode_id WHERE e.occurred_at < ep.published_at"
            ),
            "events_in_future": one("SELECT count(*) FROM listener_events WHERE occurred_at > now()"),
            "sketch_rows": one("SELECT count(*) FROM download_sketches"),
            "pending_invalidations": one("SELECT count(*) FROM rollup_invalidations"),
            "database_size_gb": round(float(one("SELECT pg_database_size(current_database())")) / 2**30, 2),
        }


# --- rollups -----------------------------------------------------------------------------------------


async def rebuild_rollups(runtime_url: str, tenants: list[dict[str, Any]], first: date, last: date,
                          which: str = "all") -> dict[str, float]:  # fmt: skip
    """``rollups.rebuild_range`` per tenant and kind, as ``castmetrics rollups rebuild`` runs it (a chunk of
    days per transaction in the tenant's RLS context); ``which``: all, big or small tenants."""
    from castmetrics.db.session import Database
    from castmetrics.rollups import service as rollups

    db = Database(runtime_url, pool_size=2, max_overflow=0, application_name="bench-rebuild")
    seconds: dict[str, float] = defaultdict(float)
    try:
        for tenant in tenants:
            tenant_id = uuid.UUID(tenant["tenant_id"])
            who = "big" if tenant["index"] == 0 else "small"
            if which not in ("all", who):
                continue
            started = time.perf_counter()
            await rollups.rebuild_range(db, tenant_id, first, last, ("listener", "download"), keep_from=first)
            seconds[f"{who}_s"] += time.perf_counter() - started
            if who == "big":
                _log(f"  big tenant: {time.perf_counter() - started:.1f} s")
    finally:
        await db.dispose()
    return dict(seconds)


# --- measurements --------------------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    label: str
    target: str | None  # the issue's target it measures (None: reported only)
    request: Callable[[int], tuple[str, dict[str, Any]]]  # request number -> (path, query)
    raw: Callable[[Any, dict[str, Any]], Any]  # (session, request 0's query) -> coroutine of the raw answer
    rollup: Callable[[Any, dict[str, Any]], Any]  # the same, from the rollups (in-process)
    normalise: Callable[[Any], Any]
    note: str = ""
    raw_runs: int | None = None
    times_ms: list[float] = field(default_factory=list)
    raw_result: dict[str, Any] = field(default_factory=dict)
    first_answer: Any = None
    first_query: dict[str, Any] = field(default_factory=dict)


def _cases(  # noqa: C901 - the count is its many small closures, one per measured answer
    tenant: dict[str, Any], today: date, launch_now: Callable[[], datetime]
) -> list[Case]:
    from castmetrics.analytics import schemas, service

    tenant_id = uuid.UUID(tenant["tenant_id"])
    podcasts = tenant["podcast_ids"]
    utc, new_york = ZoneInfo("UTC"), ZoneInfo(NEW_YORK)

    def window(i: int, days: int, cycle: int = 200) -> dict[str, str]:
        last = today - timedelta(days=i % cycle)
        return {"from": str(last - timedelta(days=days - 1)), "to": str(last)}

    def dates(query: dict[str, Any]) -> tuple[date, date]:
        return date.fromisoformat(query["from"]), date.fromisoformat(query["to"])

    def podcast_scope(query: dict[str, Any]) -> Any:
        return service.Scope("podcast", tenant_id, uuid.UUID(query["podcast"]))

    tenant_scope = service.Scope("tenant", tenant_id)

    def timeseries_out(metric: str, interval: str, zone: ZoneInfo) -> Callable[[Any, dict[str, Any], bool], Any]:
        async def compute(session: Any, query: dict[str, Any], from_raw: bool) -> Any:
            buckets = service.make_buckets(*dates(query), zone, interval)
            values, estimate = await service.series(session, podcast_scope(query), metric, buckets, from_raw=from_raw)
            points = [{"bucket": b.label, "value": v} for b, v in zip(buckets, values, strict=True)]
            return {"metric": metric, "interval": interval, "tz": zone.key, "estimate": estimate, "points": points}

        return compute

    def summary_out(scope_of: Callable[[dict[str, Any]], Any]) -> Callable[[Any, dict[str, Any], bool], Any]:
        async def compute(session: Any, query: dict[str, Any], from_raw: bool) -> Any:
            return await service.summary(session, scope_of(query), *dates(query), utc, from_raw=from_raw)

        return compute

    def unique_out() -> Callable[[Any, dict[str, Any], bool], Any]:
        async def compute(session: Any, query: dict[str, Any], from_raw: bool) -> Any:
            first, last = dates(query)
            length = (last - first).days + 1
            buckets = [
                service.period(first - timedelta(days=length), first - timedelta(days=1), utc),
                service.period(first, last, utc),
            ]
            values = await service.unique_listeners(session, tenant_scope, buckets, from_raw=from_raw)
            return {"value": values[1], "previous": values[0]}

        return compute

    def breakdown_out(by: str, scope_of: Callable[[dict[str, Any]], Any]) -> Callable[[Any, dict[str, Any], bool], Any]:
        async def compute(session: Any, query: dict[str, Any], from_raw: bool) -> Any:
            items = await service.download_breakdown(session, scope_of(query), by, *dates(query), from_raw=from_raw)
            return {"by": by, "items": items}

        return compute

    async def top_out(session: Any, query: dict[str, Any], from_raw: bool) -> Any:
        first, last = dates(query)
        items = await service.top_episodes(session, tenant_scope, "downloads", first, last, utc, 10, from_raw=from_raw)
        return {"metric": "downloads", "from": first, "to": last, "tz": "UTC", "items": items}

    async def launch_out(session: Any, query: dict[str, Any], from_raw: bool) -> Any:
        curves = await service.launch_curves(session, podcast_scope(query), query["now"], from_raw=from_raw)
        episodes = curves["episodes"]
        return {**curves, "total": len(episodes), "episodes": episodes[: int(query["limit"])]}

    def model(cls: Any, **dump: Any) -> Callable[[Any], Any]:
        return lambda answer: cls.model_validate(answer).model_dump(mode="json", by_alias=True, **dump)

    def summary_without_listeners(answer: Any) -> Any:
        out = model(schemas.SummaryOut)(answer)
        out["metrics"] = [m for m in out["metrics"] if m["metric"] != "listeners"]
        return out

    def unique_item(answer: Any) -> Any:
        if "metrics" in answer:  # the HTTP summary: its unique_listeners item
            item = next(m for m in answer["metrics"] if m["metric"] == "unique_listeners")
            return {"value": item["value"], "previous": item["previous"]}
        return answer

    def split(compute: Callable[[Any, dict[str, Any], bool], Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
        return (lambda s, q: compute(s, q, True)), (lambda s, q: compute(s, q, False))

    def podcast_request(path: str, days: int, **more: Any) -> Callable[[int], tuple[str, dict[str, Any]]]:
        def request(i: int) -> tuple[str, dict[str, Any]]:
            podcast = podcasts[i % len(podcasts)]
            return f"/v1/analytics/podcasts/{podcast}/{path}", {**window(i, days), **more, "podcast": podcast}

        return request

    def tenant_request(
        path: str, days: int, cycle: int = 200, **more: Any
    ) -> Callable[[int], tuple[str, dict[str, Any]]]:
        return lambda i: (f"/v1/analytics/tenant/{path}", {**window(i, days, cycle), **more})

    def launch_request(i: int) -> tuple[str, dict[str, Any]]:
        podcast = podcasts[i % len(podcasts)]
        return f"/v1/analytics/podcasts/{podcast}/launch", {"limit": 100, "podcast": podcast, "now": launch_now()}

    timeseries = model(schemas.TimeseriesOut)
    cases = []
    for metric in ("downloads", "plays", "unique_listeners"):
        cases.append(
            Case(
                f"1_timeseries_{metric}",
                f"1. podcast timeseries {metric}, 90 d",
                "1",
                podcast_request("timeseries", 90, metric=metric),
                *split(timeseries_out(metric, "day", utc)),
                timeseries,
            )  # fmt: skip
        )
    cases += [
        Case("2_podcast_summary", "2. podcast summary, 90 d", "2", podcast_request("summary", 90),
             *split(summary_out(podcast_scope)), summary_without_listeners,
             note="IAB listeners (a HyperLogLog estimate) not compared"),
        Case("3_tenant_breakdown_country", "3. tenant breakdown by country, 90 d", "3",
             tenant_request("breakdown", 90, by="country"), *split(breakdown_out("country", lambda q: tenant_scope)),
             model(schemas.BreakdownOut, exclude_none=True)),
        Case("3_podcast_breakdown_app", "3. podcast breakdown by app, 90 d", "3",
             podcast_request("breakdown", 90, by="app"), *split(breakdown_out("app", podcast_scope)),
             model(schemas.BreakdownOut, exclude_none=True)),
        # The 365-day windows cycle over the 36 that fit in the 400 days of data (the cache is off).
        # metric=unique_listeners: a summary of that metric alone where the route takes the parameter
        # (older versions ignore it and answer every metric: the item is taken from those).
        Case("4_tenant_unique_listeners_365", "4. tenant unique listeners, 365 d (summary)", "4",
             tenant_request("summary", 365, cycle=36, metric="unique_listeners"), *split(unique_out()), unique_item,
             note="HTTP: the summary route with metric=unique_listeners (its unique_listeners item); "
                  "raw: distinct listener_id"),
        Case("4_tenant_summary_365", "4. tenant summary, 365 d", "4", tenant_request("summary", 365, cycle=36),
             *split(summary_out(lambda q: tenant_scope)), summary_without_listeners,
             note="IAB listeners (a HyperLogLog estimate) not compared"),
        Case("x_top_episodes", "   tenant top episodes by downloads, 90 d", None,
             tenant_request("top-episodes", 90, metric="downloads"), *split(top_out), model(schemas.TopEpisodesOut),
             raw_runs=1),
        Case("x_launch", "   podcast launch curves", None, launch_request, *split(launch_out), model(schemas.LaunchOut),
             raw_runs=1),
        Case("x_hourly_new_york", "   podcast hourly plays, 7 d, New York", None,
             podcast_request("timeseries", 7, metric="plays", interval="hour", tz=NEW_YORK),
             *split(timeseries_out("plays", "hour", new_york)), timeseries, raw_runs=1),
    ]  # fmt: skip
    return cases


@contextmanager
def serve(owner_url: str, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``castmetrics serve`` (one process, no job worker, no analytics cache) until the block ends."""
    with ingest.serve(owner_url, log, {"CASTMETRICS_ANALYTICS_CACHE_SECONDS": "0"}) as running:
        yield running


def _read_key(base: str, email: str) -> str:
    login = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD})
    login.raise_for_status()
    made = httpx.post(
        f"{base}/v1/api-keys",
        json={"name": "bench analytics", "scopes": ["read"]},
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
    )
    made.raise_for_status()
    return str(made.json()["key"])


def measure_http(base: str, key: str, cases: list[Case], requests: int) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
        for case in cases:
            path, query = case.request(0)
            client.get(path, params={k: v for k, v in query.items() if k not in ("podcast", "now")})  # warm-up
            for i in range(requests):
                path, query = case.request(i)
                params = {k: v for k, v in query.items() if k not in ("podcast", "now")}
                started = time.perf_counter()
                response = client.get(path, params=params)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{case.key}: {path} {params} answered {response.status_code}: {response.text}")
                case.times_ms.append(elapsed)
                if i == 0:
                    case.first_answer, case.first_query = response.json(), query
            _log(
                f"  {case.label:<46} p50 {percentile(case.times_ms, 0.5):7.1f} ms  "
                f"p95 {percentile(case.times_ms, 0.95):7.1f} ms"
            )


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(k), b.get(k), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = [] if len(a) == len(b) else [f"{path}: {len(a)} items over HTTP, {len(b)} raw"]
        for n, (x, y) in enumerate(zip(a, b, strict=False)):
            out += _differences(x, y, f"{path}[{n}]")
        return out
    return [] if a == b else [f"{path}: HTTP {a!r}, raw {b!r}"]


async def measure_raw(runtime_url: str, tenant_id: uuid.UUID, cases: list[Case], raw_runs: int,
                      rollup_runs: int) -> None:  # fmt: skip
    """For each case: request 0's answer from raw events (timed, a few runs) and from the rollups
    in-process (timed), each run its own tenant transaction; the raw answer compared with HTTP's."""
    from castmetrics.db.session import Database

    db = Database(runtime_url, pool_size=1, max_overflow=0, application_name="bench-raw")
    try:
        for case in cases:
            query = case.first_query

            async def timed(fn: Callable[[Any, dict[str, Any]], Any], q: dict[str, Any] = query) -> tuple[float, Any]:
                async with db.tenant_transaction(tenant_id) as session:
                    started = time.perf_counter()
                    answer = await fn(session, q)
                    return (time.perf_counter() - started) * 1000, answer

            rollup_times = [(await timed(case.rollup))[0] for _ in range(rollup_runs)]
            raw_times, raw_answer = [], None
            for _ in range(case.raw_runs or raw_runs):
                elapsed, raw_answer = await timed(case.raw)
                raw_times.append(elapsed)
            if isinstance(case.first_answer, dict) and "metrics" in case.first_answer:
                case.raw_result["http_metrics_answered"] = [m["metric"] for m in case.first_answer["metrics"]]
            http = case.normalise(case.first_answer)
            raw = case.normalise(raw_answer)
            diffs = _differences(http, raw)
            case.raw_result |= {
                "raw_ms": [round(t, 1) for t in raw_times],
                "raw_median_ms": round(statistics.median(raw_times), 1),
                "in_process_rollup_median_ms": round(statistics.median(rollup_times), 2),
                "same_answer": not diffs,
                "differences": diffs[:20],
                "difference_count": len(diffs),
            }
            if isinstance(raw_answer, dict) and "metrics" in raw_answer:  # a summary: the estimate left out

                def estimate(answer: Any) -> Any:
                    found = [m for m in answer["metrics"] if m["metric"] == "listeners"]
                    return {"value": found[0]["value"], "previous": found[0]["previous"]} if found else None

                case.raw_result["listeners_not_compared"] = {
                    "http": estimate(case.first_answer),
                    "raw": estimate(raw_answer),
                }
            _log(
                f"  {case.label:<46} raw median {statistics.median(raw_times):9.1f} ms "
                f"({len(raw_times)} runs), in-process rollups {statistics.median(rollup_times):7.1f} ms, "
                f"same answer: {not diffs}"
            )
            for line in diffs[:5]:
                _log(f"      differs: {line}")
    finally:
        await db.dispose()


# --- the run -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies event and request counts")
    parser.add_argument("--small-tenants", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests per measured route")
    parser.add_argument("--raw-runs", type=int, default=3, help="timed runs of each raw reference (targets 1-4)")
    parser.add_argument("--rollup-runs", type=int, default=10, help="timed in-process runs over the rollups")
    parser.add_argument(
        "--keep-dir",
        type=Path,
        help="keep the embedded server's data here (not with DATABASE_URL); with --reuse, measure again "
        "without generating",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse the data of a previous run in --keep-dir")
    parser.add_argument(
        "--generate-only", action="store_true", help="generate the data into --keep-dir and stop (no rollups)"
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="with --reuse: rebuild the rollups again (timed) before measuring, from nothing as after generation "
        "(the rollup tables emptied first, untimed)",
    )
    parser.add_argument(
        "--over-existing",
        action="store_true",
        help="with --rebuild: rebuild over the rollups already there instead (each day's rows replaced)",
    )
    args = parser.parse_args()
    if args.keep_dir and os.environ.get("DATABASE_URL"):
        parser.error("--keep-dir keeps an embedded server's data: unset DATABASE_URL")
    if args.reuse and not args.keep_dir:
        parser.error("--reuse needs --keep-dir")
    if args.generate_only and (args.reuse or not args.keep_dir):
        parser.error("--generate-only needs --keep-dir and no --reuse")
    if args.rebuild and not args.reuse:
        parser.error("--rebuild needs --reuse (a run without it always rebuilds)")
    if args.over_existing and not args.rebuild:
        parser.error("--over-existing needs --rebuild")

    from castmetrics.config import Settings
    from castmetrics.db import migrate
    from castmetrics.db import urls as db_urls
    from castmetrics.observability import configure_logging

    configure_logging("WARNING", json=True)
    code = code_fingerprint()
    _log(f"castmetrics from {code['path']} (sha256 {code['sha256']}, newest file {code['newest_file']})")
    with tempfile.TemporaryDirectory(prefix="castmetrics-bench-") as tmp:
        root = args.keep_dir.resolve() if args.keep_dir else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        state_path = root / "bench-analytics-state.json"
        with fresh_database(root) as owner_url:
            pg_url = db_urls.libpq_url(owner_url)  # for psycopg
            runtime_url = migrate.migrate(Settings(database_url=owner_url, app_role=APP_ROLE), owner_url)
            with psycopg.connect(pg_url) as conn:
                server_version = conn.execute("SHOW server_version").fetchone()
                settings_row = conn.execute(
                    "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) "
                    "FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather',"
                    " 'effective_cache_size', 'jit', 'max_wal_size')"
                ).fetchone()
            if args.reuse:
                state = json.loads(state_path.read_text())
                _log(f"reusing the data generated at {state['cutoff']} (scale {state['scale']})")
                if state.get("code", {}).get("sha256") != code["sha256"]:
                    _log(f"WARNING: the data were generated and rolled up by other code: {state.get('code')}")
            else:
                cutoff = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
                _log(f"setting up {1 + args.small_tenants} tenants …")
                started = time.perf_counter()
                tenants = asyncio.run(_setup_tenants(owner_url, runtime_url, args.small_tenants))
                tenants_s = time.perf_counter() - started
                _log(
                    f"generating {DAYS} days: {BIG['events'] * args.scale:,.0f} + "
                    f"{args.small_tenants} x {SMALL['events'] * args.scale:,.0f} listener events, "
                    f"{BIG['requests'] * args.scale:,.0f} + {args.small_tenants} x "
                    f"{SMALL['requests'] * args.scale:,.0f} download requests …"
                )
                generated = generate(pg_url, tenants, args.scale, cutoff)
                generated["timings"]["tenants_s"] = tenants_s
                state = {
                    "cutoff": cutoff.isoformat(),
                    "code": code,
                    "scale": args.scale,
                    "tenants": tenants,
                    "generation": generated,
                }
                state_path.write_text(json.dumps(state, indent=2, default=str) + "\n")
                if args.generate_only:
                    _log(f"data generated into {root}: measure with --keep-dir {root} --reuse --rebuild")
                    return
            if "rebuild" not in state or args.rebuild:
                cutoff = datetime.fromisoformat(state["cutoff"])
                first, last = cutoff.date() - timedelta(days=DAYS - 1), cutoff.date()
                over = "rebuild" in state and args.over_existing
                if "rebuild" in state and not over:
                    with psycopg.connect(pg_url, autocommit=True) as conn:
                        conn.execute(f"TRUNCATE {', '.join(ROLLUP_TABLES)}")
                _log(
                    f"rebuilding the rollups of {first} to {last} for every tenant "
                    f"({'over the rollups already there' if over else 'from nothing'}) …"
                )
                started = time.perf_counter()
                state["rebuild"] = asyncio.run(rebuild_rollups(runtime_url, state["tenants"], first, last))
                state["rebuild"]["over_existing"] = over
                state["rebuild"]["total_s"] = time.perf_counter() - started
                with psycopg.connect(pg_url, autocommit=True) as conn:
                    started = time.perf_counter()
                    conn.execute(
                        "VACUUM (ANALYZE) listener_daily, listener_hourly, listener_keys, download_daily, "
                        "download_breakdown_daily, download_listeners_daily, download_hourly"
                    )
                    state["rebuild"]["vacuum_analyze_s"] = time.perf_counter() - started
                state["counts"] = count_data(pg_url, state["tenants"])
                state["code"] = code
                state_path.write_text(json.dumps(state, indent=2, default=str) + "\n")
            tenants = state["tenants"]
            big = tenants[0]
            _log(f"data: {json.dumps(state['counts'])}")

            today = datetime.now(UTC).date()
            launch_now = lambda: datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # noqa: E731
            cases = _cases(big, today, launch_now)
            _log(f"HTTP: {args.requests} requests per route, one client, answer cache off …")
            load = [round(n, 2) for n in os.getloadavg()]
            with serve(owner_url, root / "serve.log") as (base, server):
                key = _read_key(base, big["email"])
                started = time.perf_counter()
                measure_http(base, key, cases, args.requests)
                http_s = time.perf_counter() - started
                peak_rss = _peak_rss_mb(server.pid)
            load.append(round(os.getloadavg()[0], 2))
            _log(f"raw references ({args.raw_runs} runs for targets 1-4, 1 for the others) …")
            asyncio.run(measure_raw(runtime_url, uuid.UUID(big["tenant_id"]), cases, args.raw_runs, args.rollup_runs))

    rows, results, checks = [], {}, {}
    header = (
        f"{'measurement':<46} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'svc ms':>8} {'raw ms':>9} "
        f"{'raw/p50':>8} {'raw/p95':>8}  {'same':<4}  target: p95 <= 50 ms, raw/p50 >= 50x"
    )
    for case in cases:
        raw = case.raw_result
        p50, p95, p99 = (percentile(case.times_ms, q) for q in (0.5, 0.95, 0.99))
        ratio50, ratio95 = raw["raw_median_ms"] / p50, raw["raw_median_ms"] / p95
        verdict = ""
        if case.target:
            checks[f"{case.key}_p95"] = p95 <= TARGETS["p95_ms"]
            checks[f"{case.key}_ratio"] = ratio50 >= TARGETS["raw_ratio"]
            checks[f"{case.key}_same_answer"] = raw["same_answer"]
            verdict = f"p95 {_verdict(checks[f'{case.key}_p95'])}, ratio {_verdict(checks[f'{case.key}_ratio'])}" + (
                "" if raw["same_answer"] else ", ANSWER DIFFERS"
            )
        else:
            verdict = "(no target)" + ("" if raw["same_answer"] else ", ANSWER DIFFERS")
        rows.append(
            f"{case.label:<46} {len(case.times_ms):>4} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} "
            f"{raw['in_process_rollup_median_ms']:>8.1f} {raw['raw_median_ms']:>9.0f} {ratio50:>7.0f}x "
            f"{ratio95:>7.0f}x  {'yes' if raw['same_answer'] else 'NO':<4}  {verdict}"
        )
        results[case.key] = {
            "label": case.label.strip(),
            "target": case.target,
            "note": case.note or None,
            "requests": len(case.times_ms),
            "p50_ms": round(p50, 2),
            "p95_ms": round(p95, 2),
            "p99_ms": round(p99, 2),
            "mean_ms": round(statistics.fmean(case.times_ms), 2),
            "max_ms": round(max(case.times_ms), 2),
            **raw,
            "ratio_raw_to_p50": round(ratio50, 1),
            "ratio_raw_to_p95": round(ratio95, 1),
            "reference_query": {k: str(v) for k, v in case.first_query.items()},
        }
    counts, gen, rebuild = state["counts"], state["generation"], state["rebuild"]
    timings = gen["timings"]
    big_counts = counts["big_tenant"]
    lines = [
        f"data (scale {state['scale']}): big tenant {big_counts['podcasts']} podcasts, {big_counts['episodes']:,} "
        f"episodes ({big_counts['episodes_launched_in_window']:,} launched in the window), "
        f"{big_counts['listener_events']:,} listener events ({big_counts['distinct_listeners']:,} listeners), "
        f"{big_counts['download_requests']:,} download requests ({big_counts['downloads_counted']:,} IAB downloads); "
        f"{counts['small_tenants']['count']} small tenants, {counts['small_tenants']['listener_events']:,} events, "
        f"{counts['small_tenants']['download_requests']:,} requests; {counts['database_size_gb']} GB",
        f"generation: tenants {timings['tenants_s']:.0f} s, episodes and helpers {timings['setup_s']:.0f} s, "
        f"events + requests + sketches {timings['events_and_requests_s']:.0f} s (two connections), "
        f"vacuum/analyze {timings['vacuum_analyze_s']:.0f} s",
        f"rollup rebuild ({DAYS} days, every tenant): {rebuild['total_s']:.0f} s "
        f"(big tenant, listener and download: {rebuild.get('big_s', 0):.0f} s; "
        f"small tenants: {rebuild.get('small_s', 0):.0f} s), "
        f"vacuum/analyze {rebuild['vacuum_analyze_s']:.0f} s",
        "",
        header,
        *rows,
        f"svc ms: the same answer in-process from the rollups (median of {args.rollup_runs}); raw ms: median of "
        f"{args.raw_runs} runs from raw events (1 for the rows without target); IAB listeners of multi-day "
        "periods (HyperLogLog) not compared",
        f"server peak RSS {peak_rss:.0f} MB; load average (1, 5, 15 min; 1 min after) {load}",
    ]
    print("\n".join(lines))
    result = {
        "benchmark": "analytics",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgres": server_version[0] if server_version else None,
            "postgres_settings": settings_row[0] if settings_row else None,
            "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
            "castmetrics": code,
            "load_average": load,
        },
        "options": {
            "scale": state["scale"],
            "small_tenants": len(tenants) - 1,
            "requests_per_route": args.requests,
            "raw_runs": args.raw_runs,
            "rollup_runs": args.rollup_runs,
            "days": DAYS,
            "analytics_cache_seconds": 0,
        },
        "data": counts,
        "data_generated_by": state.get("code"),
        "generation_s": {k: round(v, 1) for k, v in timings.items()},
        "rebuild_s": {k: round(v, 1) if isinstance(v, float) else v for k, v in rebuild.items()},
        "http_s": round(http_s, 1),
        "server_peak_rss_mb": round(peak_rss, 1),
        "measurements": results,
        "targets": TARGETS,
        "target_met": checks,
        "all_targets_met": all(checks.values()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
