"""The principal cache's bound (issue 21): a key revoked, a user deactivated, a role changed, a tenant
suspended take effect at once in the process that made the change, and in another process (a second app
with its own cache, on the same database) within ``principal_cache_seconds``; so does a change an operator
makes straight in the database. The caches' clock is the test's, so the bound is crossed, not waited for."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from castmetrics.app import create_app
from castmetrics.auth.cache import MAX_SECONDS, PrincipalCache
from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.factories.identity import PASSWORD, Team, bearer
from tests.support.http import asgi_client

BOUND = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _app(settings: Settings, db: Database, owner_db: Database, clock: Clock) -> FastAPI:
    app = create_app(
        settings.model_copy(update={"principal_cache_seconds": BOUND}), database=db, admin_database=owner_db
    )
    app.state.principals = PrincipalCache(BOUND, timer=clock)
    return app


@pytest.fixture
async def here(settings: Settings, db: Database, owner_db: Database, clock: Clock) -> httpx.AsyncClient:
    async with asgi_client(_app(settings, db, owner_db, clock)) as client:
        yield client


@pytest.fixture
async def elsewhere(settings: Settings, db: Database, owner_db: Database, clock: Clock) -> httpx.AsyncClient:
    async with asgi_client(_app(settings, db, owner_db, clock)) as client:
        yield client


async def _statuses(clients: tuple[httpx.AsyncClient, ...], path: str, headers: dict[str, str]) -> list[int]:
    return [(await client.get(path, headers=headers)).status_code for client in clients]


async def test_a_revoked_key_stops_here_at_once_and_elsewhere_within_the_bound(  # type: ignore[no-untyped-def]
    make_team, here: httpx.AsyncClient, elsewhere: httpx.AsyncClient, clock: Clock
) -> None:
    team: Team = await make_team()
    made = await here.post("/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=team.auth("owner"))
    key = bearer(made.json()["key"])
    assert await _statuses((here, elsewhere), "/v1/me", key) == [200, 200]  # both processes cached it
    revoked = await here.delete(f"/v1/api-keys/{made.json()['id']}", headers=team.auth("owner"))
    assert revoked.status_code == 204
    assert (await here.get("/v1/me", headers=key)).status_code == 401
    clock.now += BOUND - 0.5
    assert (await elsewhere.get("/v1/me", headers=key)).status_code == 200  # still inside the bound
    clock.now += 0.5
    assert (await elsewhere.get("/v1/me", headers=key)).status_code == 401


async def test_a_deactivated_user_is_refused_within_the_bound(  # type: ignore[no-untyped-def]
    make_team, here: httpx.AsyncClient, elsewhere: httpx.AsyncClient, clock: Clock
) -> None:
    team: Team = await make_team()
    assert await _statuses((here, elsewhere), "/v1/me", team.auth("sales")) == [200, 200]
    changed = await here.patch(
        f"/v1/users/{team.user_ids['sales']}", json={"is_active": False}, headers=team.auth("owner")
    )
    assert changed.status_code == 200
    assert (await here.get("/v1/me", headers=team.auth("sales"))).status_code == 401
    clock.now += BOUND
    assert (await elsewhere.get("/v1/me", headers=team.auth("sales"))).status_code == 401


async def test_a_role_taken_away_is_refused_within_the_bound(  # type: ignore[no-untyped-def]
    make_team, here: httpx.AsyncClient, elsewhere: httpx.AsyncClient, clock: Clock
) -> None:
    team: Team = await make_team()
    admin = team.auth("admin")
    assert await _statuses((here, elsewhere), "/v1/audit-log", admin) == [200, 200]
    roles = (await here.get("/v1/roles", headers=team.auth("owner"))).json()["items"]
    sales = next(r["id"] for r in roles if r["name"] == "sales")  # no audit_log:read
    changed = await here.put(
        f"/v1/users/{team.user_ids['admin']}/roles", json={"role_ids": [sales]}, headers=team.auth("owner")
    )
    assert changed.status_code == 200, changed.text
    assert (await here.get("/v1/audit-log", headers=admin)).status_code == 403
    clock.now += BOUND
    assert (await elsewhere.get("/v1/audit-log", headers=admin)).status_code == 403


async def test_an_operator_suspending_a_tenant_in_the_database_takes_effect_within_the_bound(  # type: ignore[no-untyped-def]
    make_team, here: httpx.AsyncClient, elsewhere: httpx.AsyncClient, clock: Clock, owner_db: Database
) -> None:
    team: Team = await make_team()
    owner = team.auth("owner")
    assert await _statuses((here, elsewhere), "/v1/tenant", owner) == [200, 200]
    async with owner_db.transaction() as session:  # straight in the database, no API involved
        await session.execute(text("UPDATE tenants SET status = 'suspended' WHERE id = :t"), {"t": team.tenant_id})
    clock.now += BOUND
    for client in (here, elsewhere):
        refused = await client.patch("/v1/tenant", json={"name": "Nope"}, headers=owner)
        assert refused.status_code == 403 and refused.json()["reason"] == "tenant_suspended"
        assert (await client.get("/v1/tenant", headers=owner)).status_code == 200  # reads go on


async def test_a_logout_ends_the_sessions_tokens_here_at_once(  # type: ignore[no-untyped-def]
    make_team, here: httpx.AsyncClient
) -> None:
    team: Team = await make_team()
    login = await here.post("/v1/auth/login", json={"email": team.emails["viewer"], "password": PASSWORD})
    pair = login.json()
    access = bearer(pair["access_token"])
    assert (await here.get("/v1/me", headers=access)).status_code == 200
    assert (await here.post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})).status_code == 204
    assert (await here.get("/v1/me", headers=access)).status_code == 401


def test_the_cache_refuses_a_bound_beyond_five_seconds() -> None:
    with pytest.raises(ValueError, match="at most"):
        PrincipalCache(MAX_SECONDS + 1)
    assert not PrincipalCache(0).enabled
