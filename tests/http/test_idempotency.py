"""Idempotency-Key: a repeated creating POST answers the first result and creates nothing more."""

from __future__ import annotations

import httpx

from tests.factories.identity import Team


async def test_repeat_replays_the_first_answer(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    headers = {**team.auth("owner"), "Idempotency-Key": "create-key-1"}
    body = {"name": "nightly export", "scopes": ["read"]}
    first = await client.post("/v1/api-keys", json=body, headers=headers)
    second = await client.post("/v1/api-keys", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == {**first.json(), "key": None}  # the same key record; the secret is never stored
    assert second.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    keys = (await client.get("/v1/api-keys", headers=team.auth("owner"))).json()["items"]
    assert len(keys) == 1


async def test_same_key_other_body_is_refused(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    headers = {**team.auth("owner"), "Idempotency-Key": "create-key-2"}
    assert (await client.post("/v1/roles", json={"name": "one"}, headers=headers)).status_code == 201
    other = await client.post("/v1/roles", json={"name": "two"}, headers=headers)
    assert other.status_code == 422 and "another request" in other.json()["detail"]


async def test_failed_request_does_not_burn_the_key(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    headers = {**team.auth("owner"), "Idempotency-Key": "create-key-3"}
    refused = await client.post("/v1/roles", json={"name": "x", "permissions": ["nope:nope"]}, headers=headers)
    assert refused.status_code == 422
    fixed = await client.post("/v1/roles", json={"name": "x", "permissions": ["nope:nope"]}, headers=headers)
    assert fixed.status_code == 422  # evaluated again, not replayed: the failure stored nothing
    assert "idempotent-replayed" not in fixed.headers


async def test_keys_are_per_tenant(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    a: Team = await make_team()
    b: Team = await make_team()
    body = {"name": "shared-name"}
    ra = await client.post("/v1/roles", json=body, headers={**a.auth("owner"), "Idempotency-Key": "same"})
    rb = await client.post("/v1/roles", json=body, headers={**b.auth("owner"), "Idempotency-Key": "same"})
    assert ra.status_code == rb.status_code == 201 and ra.json()["id"] != rb.json()["id"]


async def test_keys_belong_to_one_user_and_secrets_are_not_stored(make_team, client: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    team: Team = await make_team()
    body = {"name": "ci", "scopes": ["admin"]}
    mine = await client.post("/v1/api-keys", json=body, headers={**team.auth("owner"), "Idempotency-Key": "k"})
    theirs = await client.post("/v1/api-keys", json=body, headers={**team.auth("admin"), "Idempotency-Key": "k"})
    assert mine.status_code == theirs.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"] and theirs.json()["key"] != mine.json()["key"]
    replay = await client.post("/v1/api-keys", json=body, headers={**team.auth("owner"), "Idempotency-Key": "k"})
    assert replay.json()["id"] == mine.json()["id"] and replay.json()["key"] is None
    async with db.tenant_transaction(team.tenant_id) as session:
        stored = (await session.execute(text("SELECT response::text FROM idempotency_keys"))).scalars().all()
    assert stored and not any(mine.json()["key"] in s or theirs.json()["key"] in s for s in stored)
