"""The monthly event quota (402), the per-tenant ingest rate (429), and an unreachable database (503)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
from sqlalchemy import text

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.factories.events import Catalog, build_catalog, count_events, listener_event
from tests.support.http import asgi_client


async def set_quotas(owner_db: Database, tenant_id: uuid.UUID, **quotas: int | None) -> None:
    async with owner_db.transaction() as session:
        await session.execute(
            text("UPDATE tenants SET metadata = CAST(:m AS jsonb) WHERE id = :t"),
            {"m": json.dumps({"quotas": quotas}), "t": tenant_id},
        )


async def test_the_monthly_event_quota_refuses_the_whole_batch(
    client: httpx.AsyncClient, catalog: Catalog, db: Database, owner_db: Database
) -> None:
    team = catalog.team
    await set_quotas(owner_db, team.tenant_id, events_per_month=5)
    first = await client.post(
        "/v1/events/listener",
        json=[listener_event(catalog.episode_ids[0]) for _ in range(4)],
        headers=team.auth("owner"),
    )
    assert first.json()["accepted"] == 4
    over = await client.post(
        "/v1/events/listener",
        json=[listener_event(catalog.episode_ids[0]) for _ in range(2)],
        headers=team.auth("owner"),
    )
    assert over.status_code == 402
    problem = over.json()
    assert (problem["quota"], problem["limit"], problem["usage"]) == ("events_per_month", 5, 4)
    assert await count_events(db, team.tenant_id) == 4
    # duplicates are not counted against the quota
    usage = await client.get("/v1/tenant/usage", headers=team.auth("owner"))
    assert usage.json()["quotas"]["events_per_month"] == {"limit": 5, "usage": 4}
    async with db.tenant_transaction(team.tenant_id) as session:
        thresholds = (
            (
                await session.execute(
                    text("SELECT payload->>'threshold' FROM outbox_events WHERE event_type = 'quota.threshold_reached'")
                )
            )
            .scalars()
            .all()
        )
    assert thresholds == ["80"]


async def test_the_ingest_rate_is_a_token_bucket_holding_one_full_batch(
    client: httpx.AsyncClient, make_team, db: Database
) -> None:  # type: ignore[no-untyped-def]
    catalog = await build_catalog(client, await make_team("free"), episodes=1)
    owner = catalog.team.auth("owner")
    full = [listener_event(catalog.episode_ids[0]) for _ in range(10_000)]
    accepted = await client.post("/v1/events/listener", json=full, headers=owner)
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 10_000
    refused = await client.post(
        "/v1/events/listener", json=[listener_event(catalog.episode_ids[0]) for _ in range(1000)], headers=owner
    )
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 6  # 1,000 events at 200/s
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert await count_events(db, catalog.team.tenant_id) == 10_000


async def test_an_unreachable_database_answers_503_with_retry_after(
    settings: Settings, client: httpx.AsyncClient, catalog: Catalog
) -> None:
    down = Database("postgresql://castmetrics_app@127.0.0.1:1/castmetrics", pool_size=1, max_overflow=0)
    try:
        async with asgi_client(create_app(settings, database=down, admin_database=down)) as broken:
            response = await broken.post(
                "/v1/events/listener", json=[listener_event(catalog.episode_ids[0])], headers=catalog.team.auth("owner")
            )
    finally:
        await down.dispose()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "SELECT" not in response.text


def padded_batch(events: list[dict[str, object]], size: int) -> bytes:
    """``events`` as a JSON array padded with trailing whitespace (still valid JSON) to ``size`` bytes."""
    body = json.dumps(events, separators=(",", ":")).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def test_the_event_body_limit_refuses_one_byte_over_and_stores_nothing(
    settings: Settings, catalog: Catalog, db: Database, owner_db: Database
) -> None:
    """Event routes take bodies up to ``events_max_body_bytes`` (10 MB by default; 4 KiB here so the
    bodies stay small): one byte over answers 413 problem+json, whether the length is declared or the
    body is streamed, and nothing is stored; a body of exactly the limit is ingested."""
    # given: an app whose event routes accept at most 4 KiB, and one batch of events
    limit = 4096
    small = settings.model_copy(update={"events_max_body_bytes": limit})
    events = [listener_event(catalog.episode_ids[0]) for _ in range(5)]
    headers = {**catalog.team.auth("owner"), "Content-Type": "application/json"}
    over, at_limit = padded_batch(events, limit + 1), padded_batch(events, limit)

    async def streamed(body: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with asgi_client(create_app(small, database=db, admin_database=owner_db)) as limited:
        # when: the batch comes one byte over the limit, with its Content-Length and streamed without one
        declared = await limited.post("/v1/events/listener", content=over, headers=headers)
        chunked = await limited.post("/v1/events/listener", content=streamed(over), headers=headers)
        # then: both are refused as too large, and no event is stored
        for refused in (declared, chunked):
            assert refused.status_code == 413, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["status"] == 413
            assert str(limit) in refused.json()["detail"]
        assert declared.json()["limit"] == limit
        assert await count_events(db, catalog.team.tenant_id) == 0

        # when: the same batch comes at exactly the limit
        accepted = await limited.post("/v1/events/listener", content=at_limit, headers=headers)
    # then: it is processed normally and every event is stored
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"accepted": 5, "duplicates": 0, "rejected": []}
    assert await count_events(db, catalog.team.tenant_id) == 5
