"""API keys: shown once, hashed, scoped, acting for their creator, revocable."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from castmetrics.db.session import Database
from castmetrics.identity.models import ApiKey
from tests.factories.identity import Team, bearer


async def _key(client: httpx.AsyncClient, team: Team, *scopes: str) -> dict:  # type: ignore[type-arg]
    response = await client.post(
        "/v1/api-keys", json={"name": "-".join(scopes), "scopes": list(scopes)}, headers=team.auth("owner")
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_key_is_shown_once_and_stored_hashed(make_team, client: httpx.AsyncClient, db: Database) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    created = await _key(client, team, "read")
    assert created["key"].startswith(f"cm_{created['prefix']}_")
    listed = (await client.get("/v1/api-keys", headers=team.auth("owner"))).json()["items"]
    assert [k["prefix"] for k in listed] == [created["prefix"]] and "key" not in listed[0]
    async with db.tenant_transaction(team.tenant_id) as session:
        stored = (await session.scalars(select(ApiKey))).one()
    assert created["key"].encode() not in stored.key_hash and len(stored.key_hash) == 32


async def test_me_with_an_api_key_names_the_key_and_creator(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    created = await _key(client, team, "read")
    me = (await client.get("/v1/me", headers=bearer(created["key"]))).json()
    assert me["user"]["id"] == str(team.user_ids["owner"])
    assert me["api_key"] == {"id": created["id"], "name": "read", "prefix": created["prefix"], "scopes": ["read"]}
    assert all(p.endswith(":read") for p in me["permissions"])
    key = (await client.get(f"/v1/api-keys/{created['id']}", headers=team.auth("owner"))).json()
    assert key["last_used_at"] is not None


async def test_scopes_limit_what_a_key_does(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    ingest = bearer((await _key(client, team, "ingest"))["key"])
    read = bearer((await _key(client, team, "read"))["key"])
    admin = bearer((await _key(client, team, "admin"))["key"])
    assert (await client.get("/v1/users", headers=ingest)).status_code == 403
    assert (await client.get("/v1/tenant", headers=ingest)).status_code == 403
    assert (await client.get("/v1/me", headers=ingest)).json()["permissions"] == ["events:create"]
    assert (await client.get("/v1/users", headers=read)).status_code == 200
    assert (await client.patch("/v1/tenant", json={"name": "Renamed"}, headers=read)).status_code == 403
    assert (await client.patch("/v1/tenant", json={"name": "Renamed"}, headers=admin)).status_code == 200
    cannot = await client.post("/v1/api-keys", json={"name": "child", "scopes": ["admin"]}, headers=admin)
    assert cannot.status_code == 403 and cannot.json()["reason"] == "api_key_cannot_create_keys"


async def test_a_key_never_exceeds_its_creator(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    created = await client.post(
        "/v1/api-keys", json={"name": "viewer-admin", "scopes": ["admin"]}, headers=team.auth("viewer")
    )
    assert created.status_code == 403  # viewers lack api_keys:create in the first place
    analyst_key = await client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["admin"]}, headers=team.auth("analyst")
    )
    assert analyst_key.status_code == 403


async def test_revoked_key_stops_working(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    created = await _key(client, team, "read")
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=team.auth("owner"))).status_code == 204
    assert (await client.get("/v1/me", headers=bearer(created["key"]))).status_code == 401
    shown = (await client.get(f"/v1/api-keys/{created['id']}", headers=team.auth("owner"))).json()
    assert shown["revoked_at"] is not None


async def test_bad_key_input_is_a_422(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    for body in ({"name": "x", "scopes": []}, {"name": "x", "scopes": ["root"]}, {"name": "", "scopes": ["read"]}):
        response = await client.post("/v1/api-keys", json=body, headers=team.auth("owner"))
        assert response.status_code == 422, body


async def test_an_ingest_only_key_learns_only_its_tenant_and_permissions(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    # given an ingest-only key, as a player SDK would carry it
    team = await make_team()
    ingest = bearer((await _key(client, team, "ingest"))["key"])
    # when it asks who it is
    me = (await client.get("/v1/me", headers=ingest)).json()
    # then it learns its tenant and what it may do, not its creator's name, email or roles
    assert me["user"] is None and me["roles"] == []
    assert me["permissions"] == ["events:create"] and me["tenant"]["id"] == str(team.tenant_id)
    assert "@" not in str(me)
