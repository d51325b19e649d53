"""Benchmark: the five attribution models, set-based in SQL, against a per-conversion Python run.

Data (a fresh PostgreSQL as in ``bench/ingest.py``: a throw-away embedded server, or a scratch
database on the server ``DATABASE_URL`` names), generated server-side in SQL as the owner, in one
enterprise tenant with 20 episodes:

* 200 campaigns: 180 of 50 sponsors (3 or 4 each) and 20 without a sponsor, so 70 attribution
  groups; lookback 30 days;
* 1,000,000 touchpoints (90 % impressions, 10 % clicks) as 250,000 "journeys" of four touches of one
  listener on one group's campaigns, spread over the 35 days before the journey's end (so some fall
  outside the lookback); listeners come from a pool of 200,000 with heavy listeners (a power law), so
  journeys of the same listener and group overlap as they do in real data;
* 100,000 conversions with revenue (USD): 90 % at the end of a journey, 10 % of a random listener and
  group (mostly unattributed).

Measured, in one run:

1. **SQL**: ``attribution.service.credit_by_campaign`` — all five models in one statement over every
   campaign, through the runtime role under RLS, as the routes run it (median of ``--runs``); and each
   model alone (five statements), summed;
2. **Python**: the straightforward per-conversion implementation (``attribution.reference``): read
   every conversion and touchpoint, then for each conversion find its candidate touches, order them and
   credit them under each model (one run; read and compute timed separately);
3. the two answers compared per (campaign, model): conversions and revenue to 1e-9 (relative, and
   absolute for values under 1);
4. for scale, the compare route's work for single campaigns (``attribution.service.compare``, p50).

Targets: all five models under 5 s in total, at least 5x faster than the Python run, equal results.
Run ``python -m bench.attribution`` from the repository root; prints a table and writes
``bench/results/attribution.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.analytics import code_fingerprint, percentile
from bench.ingest import APP_ROLE, PASSWORD, _verdict, fresh_database

RESULTS = Path(__file__).resolve().parent / "results" / "attribution.json"
SPEC = {
    "sponsors": 50, "sponsored_campaigns": 180, "solo_campaigns": 20, "episodes": 20, "journeys": 250_000,
    "touches_per_journey": 4, "conversions": 100_000, "listeners": 200_000, "days": 100,
}  # fmt: skip


def _log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _setup_tenant(runtime_url: str, owner_url: str) -> dict[str, Any]:
    """An enterprise tenant with one podcast; its episodes, sponsors and campaigns come from SQL."""
    from castmetrics.auth.principal import Actor
    from castmetrics.catalog import service as catalog
    from castmetrics.catalog.schemas import PodcastIn
    from castmetrics.config import Settings
    from castmetrics.db.session import Database
    from castmetrics.identity import service as identity
    from castmetrics.tenancy.schemas import TenantCreate

    settings = Settings(database_url=owner_url, app_role=APP_ROLE, bcrypt_rounds=4)
    tenant_id = uuid.uuid4()
    db = Database(runtime_url, pool_size=1, max_overflow=0)
    try:
        async with db.tenant_transaction(tenant_id) as session:
            tenant = await identity.provision_tenant(
                session,
                TenantCreate(name="Bench Network", slug=f"bench-{tenant_id.hex[:8]}", subscription_tier="enterprise"),
                Actor.system("bench"),
                tenant_id=tenant_id,
            )
            await identity.create_user(
                session, settings, tenant_id, email=f"owner@{tenant_id.hex[:8]}.example.com", name="Owner",
                password=PASSWORD, role_names=["owner"], actor=Actor.system("bench"), email_verified=True,
            )  # fmt: skip
            podcast = await catalog.create_podcast(session, tenant, Actor.system("bench"), PodcastIn(name="Show"))
    finally:
        await db.dispose()
    return {"tenant_id": tenant_id, "podcast_id": podcast.id}


def generate(owner_url: str, tenant_id: uuid.UUID, podcast_id: uuid.UUID, seed: float) -> dict[str, int]:
    """Episodes, sponsors, campaigns, touchpoints and conversions, in SQL (see the module doc)."""
    from castmetrics.db import urls

    s = SPEC
    groups = s["sponsors"] + s["solo_campaigns"]
    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        today = datetime.now(UTC).date()
        conn.execute(
            "SELECT castmetrics_event_partitions_ensure(%s, %s)", (today - timedelta(days=s["days"] + 40), today)
        )
        conn.execute("SELECT setseed(%s)", (seed,))
        params = {"t": tenant_id, "p": podcast_id, **s, "groups": groups}
        conn.execute(
            """
            INSERT INTO episodes (tenant_id, id, podcast_id, guid, title)
            SELECT %(t)s, gen_random_uuid(), %(p)s, 'bench-' || n, 'Episode ' || n
            FROM generate_series(1, %(episodes)s) n
            """,
            params,
        )
        conn.execute(
            """
            INSERT INTO sponsors (tenant_id, id, name)
            SELECT %(t)s, gen_random_uuid(), 'Sponsor ' || n FROM generate_series(0, %(sponsors)s - 1) n
            """,
            params,
        )
        # Campaign k < 180 belongs to sponsor k %% 50 (group k %% 50); campaign k >= 180 is its own group.
        conn.execute(
            """
            CREATE TEMP TABLE bench_campaigns AS
            SELECT k, gen_random_uuid() AS id,
                   CASE WHEN k < %(sponsored_campaigns)s THEN k %% %(sponsors)s
                        ELSE %(sponsors)s + k - %(sponsored_campaigns)s END AS g
            FROM generate_series(0, %(sponsored_campaigns)s + %(solo_campaigns)s - 1) k
            """,
            params,
        )
        conn.execute(
            """
            INSERT INTO campaigns (tenant_id, id, sponsor_id, name, stage, lookback_days)
            SELECT %(t)s, c.id, s.id, 'Campaign ' || c.k, 'active', 30
            FROM bench_campaigns c
            LEFT JOIN (SELECT id, row_number() OVER (ORDER BY name COLLATE "C") - 1 AS n
                       FROM sponsors WHERE tenant_id = %(t)s) s
                   ON c.k < %(sponsored_campaigns)s AND s.n = c.g
            """,
            params,
        )
        conn.execute(
            """
            CREATE TEMP TABLE bench_groups AS
            SELECT g, array_agg(id ORDER BY k) AS campaigns FROM bench_campaigns GROUP BY g
            """
        )
        conn.execute(
            """
            CREATE TEMP TABLE bench_episodes AS
            SELECT array_agg(id ORDER BY title) AS ids FROM episodes WHERE tenant_id = %(t)s
            """,
            params,
        )
        conn.execute(
            """
            CREATE TEMP TABLE bench_journeys AS
            SELECT j, 'listener-' || floor(%(listeners)s * power(random(), 1.5))::int AS listener,
                   floor(random() * %(groups)s)::int AS g,
                   now() - random() * make_interval(days => %(days)s) AS ends
            FROM generate_series(1, %(journeys)s) j
            """,
            params,
        )
        conn.execute(
            """
            INSERT INTO attribution_events (tenant_id, id, campaign_id, episode_id, listener_id, attribution_type,
                                            occurred_at)
            SELECT %(t)s, gen_random_uuid(),
                   gr.campaigns[1 + floor(random() * cardinality(gr.campaigns))::int],
                   ep.ids[1 + floor(random() * cardinality(ep.ids))::int],
                   jn.listener,
                   CASE WHEN random() < 0.1 THEN 'click' ELSE 'impression' END,
                   jn.ends - random() * interval '35 days'
            FROM bench_journeys jn
            JOIN bench_groups gr ON gr.g = jn.g
            CROSS JOIN generate_series(1, %(touches_per_journey)s) k
            CROSS JOIN bench_episodes ep
            """,
            params,
        )
        conn.execute(
            """
            INSERT INTO attribution_events (tenant_id, id, campaign_id, listener_id, attribution_type,
                                            attribution_data, occurred_at)
            SELECT %(t)s, gen_random_uuid(),
                   gr.campaigns[1 + floor(random() * cardinality(gr.campaigns))::int],
                   x.listener, 'conversion',
                   jsonb_build_object('revenue', round((10 + random() * 190)::numeric, 2), 'currency', 'USD'),
                   x.at
            FROM (
                SELECT jn.listener, jn.g, jn.ends + random() * interval '2 hours' AS at
                FROM bench_journeys jn WHERE jn.j <= %(conversions)s * 9 / 10
                UNION ALL
                SELECT 'listener-' || floor(random() * %(listeners)s)::int, floor(random() * %(groups)s)::int,
                       now() - random() * make_interval(days => %(days)s)
                FROM generate_series(1, %(conversions)s / 10)
            ) x
            JOIN bench_groups gr ON gr.g = x.g
            WHERE x.at < now()
            """,
            params,
        )
        conn.execute("ANALYZE attribution_events")
        conn.execute("ANALYZE campaigns")
        counts = conn.execute(
            """
            SELECT count(*) FILTER (WHERE attribution_type <> 'conversion'),
                   count(*) FILTER (WHERE attribution_type = 'conversion'),
                   (SELECT count(*) FROM campaigns WHERE tenant_id = %(t)s)
            FROM attribution_events WHERE tenant_id = %(t)s
            """,
            params,
        ).fetchone()
    assert counts is not None
    return {"touchpoints": int(counts[0]), "conversions": int(counts[1]), "campaigns": int(counts[2])}


async def explain(runtime_url: str, tenant_id: uuid.UUID) -> str:
    """EXPLAIN ANALYZE of the five-model statement over every campaign."""
    from castmetrics.attribution import engine, service
    from castmetrics.attribution.schemas import MODELS
    from castmetrics.db.binary import fetch_binary
    from castmetrics.db.session import Database

    db = Database(runtime_url, pool_size=1, max_overflow=0)
    try:
        async with db.tenant_transaction(tenant_id) as session:
            params = service.statement_params(tenant_id, service.Options(), None, 30)
            sql = engine.statement(service._ALL_SELECT.format(sums=engine.credit_sums(MODELS)))
            rows = await fetch_binary(session, "EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
    finally:
        await db.dispose()
    return "\n".join(str(row[0]) for row in rows)


async def measure_sql(runtime_url: str, tenant_id: uuid.UUID, runs: int) -> dict[str, Any]:
    """All five models in one statement (``runs`` times), then each model alone."""
    from castmetrics.attribution import service
    from castmetrics.attribution.schemas import MODELS
    from castmetrics.db.session import Database

    db = Database(runtime_url, pool_size=1, max_overflow=0, application_name="bench-attribution")
    try:
        together: list[float] = []
        answer: dict[tuple[uuid.UUID, str], tuple[float, float]] = {}
        for n in range(runs):
            async with db.tenant_transaction(tenant_id) as session:
                started = time.perf_counter()
                answer = dict(await service.credit_by_campaign(session, tenant_id, MODELS))
                together.append(time.perf_counter() - started)
            _log(f"sql, five models in one statement, run {n + 1}: {together[-1]:.2f} s")
        alone: dict[str, float] = {}
        for model in MODELS:
            async with db.tenant_transaction(tenant_id) as session:
                started = time.perf_counter()
                await service.credit_by_campaign(session, tenant_id, (model,))
                alone[model] = time.perf_counter() - started
            _log(f"sql, {model} alone: {alone[model]:.2f} s")
        # The compare route's work for single campaigns (what a dashboard asks for).
        from sqlalchemy import select

        from castmetrics.sponsorship.models import Campaign

        route: list[float] = []
        async with db.tenant_transaction(tenant_id) as session:
            campaigns = list((await session.scalars(select(Campaign).order_by(Campaign.name).limit(20))).all())
        for campaign in campaigns:
            async with db.tenant_transaction(tenant_id) as session:
                started = time.perf_counter()
                await service.compare(session, campaign)
                route.append(time.perf_counter() - started)
    finally:
        await db.dispose()
    return {
        "answer": answer,
        "five_models_one_statement_s": together,
        "five_models_one_statement_median_s": statistics.median(together),
        "each_model_alone_s": alone,
        "each_model_alone_total_s": sum(alone.values()),
        "compare_one_campaign_p50_ms": percentile(route, 0.5) * 1000,
        "compare_one_campaign_p95_ms": percentile(route, 0.95) * 1000,
    }


def measure_python(owner_url: str, tenant_id: uuid.UUID) -> dict[str, Any]:
    """The per-conversion reference: read everything, then credit one conversion at a time."""
    from castmetrics.attribution import reference
    from castmetrics.attribution.schemas import MODELS
    from castmetrics.db import urls

    started = time.perf_counter()
    with psycopg.connect(urls.libpq_url(owner_url)) as conn:
        touches = [
            reference.Touch(*row)
            for row in conn.execute(
                """
                SELECT e.id, e.occurred_at, e.listener_id, coalesce(c.sponsor_id, c.id), e.campaign_id
                FROM attribution_events e JOIN campaigns c ON c.tenant_id = e.tenant_id AND c.id = e.campaign_id
                WHERE e.tenant_id = %s AND e.attribution_type IN ('impression', 'click')
                """,
                (tenant_id,),
            )
        ]
        conversions = [
            reference.Conversion(row[0], row[1], row[2], row[3], float(row[4] or 0), timedelta(days=row[5]))
            for row in conn.execute(
                """
                SELECT e.id, e.occurred_at, e.listener_id, coalesce(c.sponsor_id, c.id),
                       CAST(e.attribution_data ->> 'revenue' AS float8), c.lookback_days
                FROM attribution_events e JOIN campaigns c ON c.tenant_id = e.tenant_id AND c.id = e.campaign_id
                WHERE e.tenant_id = %s AND e.attribution_type = 'conversion'
                """,
                (tenant_id,),
            )
        ]
    read = time.perf_counter() - started
    _log(f"python: read {len(touches):,} touchpoints and {len(conversions):,} conversions in {read:.1f} s")
    started = time.perf_counter()
    answer = reference.by_campaign(conversions, touches, models=MODELS)
    compute = time.perf_counter() - started
    _log(f"python: credited every conversion under five models in {compute:.1f} s")
    return {"answer": answer, "read_s": read, "compute_s": compute, "total_s": read + compute}


def compare_answers(
    sql: dict[tuple[uuid.UUID, str], tuple[float, float]], py: dict[tuple[uuid.UUID, str], tuple[float, float]]
) -> dict[str, Any]:
    keys = set(sql) | set(py)
    worst_abs = worst_rel = 0.0
    mismatches = 0
    for key in keys:
        for a, b in zip(sql.get(key, (0.0, 0.0)), py.get(key, (0.0, 0.0)), strict=True):
            diff = abs(a - b)
            worst_abs = max(worst_abs, diff)
            worst_rel = max(worst_rel, diff / max(abs(a), abs(b), 1e-300) if diff else 0.0)
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
                mismatches += 1
    credited = sum(v[0] for (_, model), v in sql.items() if model == "linear")
    return {
        "pairs_compared": len(keys),
        "mismatches": mismatches,
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_rel,
        "credited_conversions_linear": credited,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the five-model statement")
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument("--explain", action="store_true", help="print the statement's plan, then stop")
    args = parser.parse_args()

    from castmetrics.config import Settings
    from castmetrics.db import migrate

    with (
        tempfile.TemporaryDirectory(prefix="castmetrics-bench-attribution-") as tmp,
        fresh_database(Path(tmp)) as owner_url,
    ):
        runtime_url = migrate.migrate(Settings(database_url=owner_url, app_role=APP_ROLE), owner_url)
        setup = asyncio.run(_setup_tenant(runtime_url, owner_url))
        started = time.perf_counter()
        counts = generate(owner_url, setup["tenant_id"], setup["podcast_id"], args.seed)
        _log(f"generated {counts} in {time.perf_counter() - started:.1f} s")
        if args.explain:
            print(asyncio.run(explain(runtime_url, setup["tenant_id"])))
            return
        sql = asyncio.run(measure_sql(runtime_url, setup["tenant_id"], args.runs))
        py = measure_python(owner_url, setup["tenant_id"])
        equal = compare_answers(sql.pop("answer"), py.pop("answer"))

    fastest = sql["five_models_one_statement_median_s"]
    ratio = py["total_s"] / fastest
    ratio_alone = py["total_s"] / sql["each_model_alone_total_s"]
    checks = {
        "five models under 5 s (one statement, median)": fastest < 5.0,
        ">= 5x faster than per-conversion Python (one statement)": ratio >= 5.0,
        "equal results to 1e-9": equal["mismatches"] == 0,
    }
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "code": code_fingerprint(),
        "data": {**SPEC, **counts},
        "sql": sql,
        "python": py,
        "ratio_python_over_sql_one_statement": ratio,
        "ratio_python_over_sql_five_statements": ratio_alone,
        "equality": equal,
        "checks": checks,
    }
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"data: {counts['touchpoints']:,} touchpoints, {counts['conversions']:,} conversions, "
          f"{counts['campaigns']} campaigns")  # fmt: skip
    print(f"SQL, five models in one statement: median {fastest:.2f} s of {sql['five_models_one_statement_s']}")
    alone = ", ".join(f"{m} {s:.2f}" for m, s in sql["each_model_alone_s"].items())
    total_alone = sql["each_model_alone_total_s"]
    print(f"SQL, each model alone (for scale; not how the routes ask): {alone}; total {total_alone:.2f} s")
    print(f"compare route work, one campaign: p50 {sql['compare_one_campaign_p50_ms']:.0f} ms, "
          f"p95 {sql['compare_one_campaign_p95_ms']:.0f} ms")  # fmt: skip
    print(f"Python per conversion: read {py['read_s']:.2f} s + compute {py['compute_s']:.2f} s = {py['total_s']:.2f} s")
    print(f"ratio Python / SQL: {ratio:.1f}x (one statement), {ratio_alone:.1f}x (five statements)")
    print(f"equality: {equal}")
    for name, ok in checks.items():
        print(f"  {_verdict(ok)}  {name}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
