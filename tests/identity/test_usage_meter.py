"""Usage metering off the request path (issue 21): API calls and logins are counted in memory and written
in batches; the stored counts equal the requests made, a user or tenant deleted meanwhile does not fail the
flush for the others, a failed flush keeps its counts, and a clean shutdown writes what is left."""

from __future__ import annotations

import uuid
from datetime import date

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from castmetrics.app import create_app
from castmetrics.auth.usage import UsageMeter
from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.factories.identity import Team
from tests.support.http import asgi_client

DAY = date(2026, 3, 9)


async def _stored(owner_db: Database, user_id: uuid.UUID) -> tuple[int, int]:
    async with owner_db.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT coalesce(sum(logins), 0), coalesce(sum(api_calls), 0) FROM user_metrics WHERE user_id = :u"
                ),
                {"u": user_id},
            )
        ).one()
    return int(row[0]), int(row[1])


async def test_the_stored_counts_equal_the_requests_made(  # type: ignore[no-untyped-def]
    make_team, app: FastAPI, client: httpx.AsyncClient, db: Database, owner_db: Database
) -> None:
    team: Team = await make_team()  # each user logged in once
    meter = app.state.usage
    assert isinstance(meter, UsageMeter)
    for _ in range(7):
        assert (await client.get("/v1/me", headers=team.auth("sales"))).status_code == 200
    assert (await client.get("/v1/podcasts", headers=team.auth("sales"))).status_code == 200
    assert (await client.get("/v1/me", headers={"Authorization": "Bearer nonsense"})).status_code == 401
    assert await _stored(owner_db, team.user_ids["sales"]) == (0, 0)  # nothing written on the request path
    # the user's activity, read before any flush, already counts them (this process's counts added)
    seen = (await client.get(f"/v1/users/{team.user_ids['sales']}/metrics", headers=team.auth("owner"))).json()
    assert (sum(d["logins"] for d in seen["items"]), sum(d["api_calls"] for d in seen["items"])) == (1, 8)
    assert await meter.flush(db) >= 2
    assert await _stored(owner_db, team.user_ids["sales"]) == (1, 8)
    assert await meter.flush(db) == 0  # nothing counted twice
    assert await _stored(owner_db, team.user_ids["sales"]) == (1, 8)


async def test_a_deleted_user_or_tenant_does_not_fail_the_flush_for_the_others(  # type: ignore[no-untyped-def]
    make_team, db: Database, owner_db: Database
) -> None:
    first: Team = await make_team()
    second: Team = await make_team()
    meter = UsageMeter(today=lambda: DAY)
    for team in (first, second):
        for role in ("sales", "viewer"):
            meter.count(team.tenant_id, team.user_ids[role], api_calls=3)
    meter.count(uuid.uuid4(), uuid.uuid4(), api_calls=5)  # a tenant that is gone
    async with owner_db.transaction() as session:
        await session.execute(text("DELETE FROM users WHERE id = :u"), {"u": first.user_ids["viewer"]})
    assert await meter.flush(db) == 3
    assert await _stored(owner_db, first.user_ids["sales"]) == (0, 3)
    assert await _stored(owner_db, second.user_ids["viewer"]) == (0, 3)
    assert await _stored(owner_db, first.user_ids["viewer"]) == (0, 0)


async def test_a_failed_flush_keeps_its_counts(make_team, db: Database, owner_db: Database) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    meter = UsageMeter(today=lambda: DAY)
    meter.count(team.tenant_id, team.user_ids["sales"], api_calls=4, logins=1)
    gone = Database("postgresql://nobody@127.0.0.1:1/none", pool_size=1, max_overflow=0)
    try:
        assert await meter.flush(gone) == 0
    finally:
        await gone.dispose()
    assert meter.pending(team.tenant_id, team.user_ids["sales"])[DAY].api_calls == 4
    assert await meter.flush(db) == 1
    assert await _stored(owner_db, team.user_ids["sales"]) == (1, 4)


async def test_a_clean_shutdown_writes_what_is_left(  # type: ignore[no-untyped-def]
    make_team, settings: Settings, db: Database, owner_db: Database
) -> None:
    team: Team = await make_team()
    app = create_app(settings, database=db, admin_database=owner_db)  # its own: the lifespan starts its services
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        for _ in range(5):
            assert (await client.get("/v1/me", headers=team.auth("viewer"))).status_code == 200
    assert await _stored(owner_db, team.user_ids["viewer"]) == (0, 5)  # (the login went through another app)


async def test_an_api_keys_last_use_is_written_with_the_counts(  # type: ignore[no-untyped-def]
    make_team, app: FastAPI, client: httpx.AsyncClient, db: Database, owner_db: Database
) -> None:
    team: Team = await make_team()
    made = (
        await client.post("/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=team.auth("owner"))
    ).json()
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {made['key']}"})).status_code == 200
    shown = (await client.get(f"/v1/api-keys/{made['id']}", headers=team.auth("owner"))).json()
    assert shown["last_used_at"] is not None  # this process's use, not written yet
    await app.state.usage.flush(db)
    async with owner_db.transaction() as session:
        stored = await session.scalar(text("SELECT last_used_at FROM api_keys WHERE id = :k"), {"k": made["id"]})
    assert stored is not None
