"""Tenant flag routes: effective flags, overrides, the custom_roles gate, permissions, isolation."""

from __future__ import annotations

import httpx

from tests.factories.identity import bearer, signup

ROLE = {"name": "Producers", "permissions": ["podcasts:read"]}


async def test_override_then_back_to_the_default(client: httpx.AsyncClient) -> None:
    owner = bearer((await signup(client))["access_token"])
    # given the global default
    assert (await client.get("/v1/feature-flags", headers=owner)).json() == {"custom_roles": True}
    # when the tenant overrides it, the override wins at once (the cache is invalidated)
    put = await client.put("/v1/feature-flags/custom_roles", json={"enabled": False}, headers=owner)
    assert put.status_code == 200
    assert put.json() == {"name": "custom_roles", "enabled": False}
    assert (await client.get("/v1/feature-flags", headers=owner)).json() == {"custom_roles": False}
    # when the override is removed, the default applies again; removing it twice is fine
    assert (await client.delete("/v1/feature-flags/custom_roles", headers=owner)).status_code == 204
    assert (await client.get("/v1/feature-flags", headers=owner)).json() == {"custom_roles": True}
    assert (await client.delete("/v1/feature-flags/custom_roles", headers=owner)).status_code == 204
    # and each change is in the audit log, once
    log = (await client.get("/v1/audit-log", params={"entity_type": "feature_flag"}, headers=owner)).json()
    assert [(e["action"], e["entity_id"], e["actor_type"], e["changes"]) for e in log["items"]] == [
        ("delete", "custom_roles", "user", {"override": {"before": False, "after": None}}),
        ("update", "custom_roles", "user", {"override": {"before": None, "after": False}}),
    ]


async def test_custom_roles_flag_gates_role_creation(client: httpx.AsyncClient) -> None:
    owner = bearer((await signup(client))["access_token"])
    await client.put("/v1/feature-flags/custom_roles", json={"enabled": False}, headers=owner)
    refused = await client.post("/v1/roles", json=ROLE, headers=owner)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert (refused.json()["reason"], refused.json()["flag"]) == ("feature_disabled", "custom_roles")
    assert "Producers" not in [r["name"] for r in (await client.get("/v1/roles", headers=owner)).json()["items"]]

    await client.put("/v1/feature-flags/custom_roles", json={"enabled": True}, headers=owner)
    created = await client.post("/v1/roles", json=ROLE, headers=owner)
    assert created.status_code == 201, created.text
    assert created.json()["permissions"] == ["podcasts:read"]


async def test_viewer_reads_flags_but_cannot_change_them(client: httpx.AsyncClient, make_team) -> None:  # type: ignore[no-untyped-def]
    viewer = (await make_team()).auth("viewer")
    assert (await client.get("/v1/feature-flags", headers=viewer)).json() == {"custom_roles": True}
    for response, permission in (
        (await client.put("/v1/feature-flags/custom_roles", json={"enabled": False}, headers=viewer), "update"),
        (await client.delete("/v1/feature-flags/custom_roles", headers=viewer), "delete"),
    ):
        assert response.status_code == 403
        assert response.json()["reason"] == "missing_permission"
        assert response.json()["permission"] == f"feature_flags:{permission}"
    assert (await client.get("/v1/feature-flags", headers=viewer)).json() == {"custom_roles": True}


async def test_one_tenants_override_does_not_leak(client: httpx.AsyncClient) -> None:
    first = bearer((await signup(client))["access_token"])
    second = bearer((await signup(client))["access_token"])
    await client.put("/v1/feature-flags/custom_roles", json={"enabled": False}, headers=first)
    assert (await client.get("/v1/feature-flags", headers=first)).json() == {"custom_roles": False}
    assert (await client.get("/v1/feature-flags", headers=second)).json() == {"custom_roles": True}
    assert (await client.post("/v1/roles", json=ROLE, headers=second)).status_code == 201
    assert (await client.post("/v1/roles", json=ROLE, headers=first)).status_code == 403


async def test_bad_requests_are_problems(client: httpx.AsyncClient) -> None:
    owner = bearer((await signup(client))["access_token"])
    cases = [
        (client.put("/v1/feature-flags/no_such_flag", json={"enabled": True}, headers=owner), 404),
        (client.delete("/v1/feature-flags/no_such_flag", headers=owner), 404),
        (client.put("/v1/feature-flags/Not-A-Flag", json={"enabled": True}, headers=owner), 422),
        (client.put("/v1/feature-flags/custom_roles", json={"enabled": "maybe"}, headers=owner), 422),
        (client.put("/v1/feature-flags/custom_roles", json={}, headers=owner), 422),
        (client.put("/v1/feature-flags/custom_roles", json={"enabled": True, "x": 1}, headers=owner), 422),
        (client.get("/v1/feature-flags"), 401),
    ]
    for request, expected in cases:
        response = await request
        assert response.status_code == expected, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/feature-flags", headers=owner)).json() == {"custom_roles": True}
