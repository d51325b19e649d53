"""The permission engine: every route guarded, each default role allowed and refused as it should be,
no escalation, tenants invisible to each other."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI

from castmetrics.auth import service as auth
from castmetrics.auth.dependencies import PUBLIC_ROUTES
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.errors import Conflict
from castmetrics.identity import service as identity
from castmetrics.identity.permissions import DEFAULT_ROLES
from tests.factories.identity import Team
from tests.support.routes import api_routes, permissions_of_route

MISSING = "00000000-0000-4000-8000-000000000000"


def test_every_route_is_guarded_or_explicitly_public(app: FastAPI) -> None:
    unguarded = []
    routes = set()
    for path, methods, route in api_routes(app):
        for method in methods:
            routes.add((method, path))
            if not permissions_of_route(route) and (method, path) not in PUBLIC_ROUTES:
                unguarded.append(f"{method} {path}")
    assert len(routes) > 30
    assert unguarded == []
    assert routes >= PUBLIC_ROUTES, f"stale public entries: {PUBLIC_ROUTES - routes}"


# (method, path, JSON body, the permission the route needs)
MATRIX = [
    ("GET", "/v1/users", None, "users:read"),
    ("GET", f"/v1/users/{MISSING}", None, "users:read"),
    ("PATCH", f"/v1/users/{MISSING}", {"name": "X"}, "users:update"),
    ("DELETE", f"/v1/users/{MISSING}", None, "users:delete"),
    ("PUT", f"/v1/users/{MISSING}/roles", {"role_ids": []}, "users:update"),
    ("GET", "/v1/roles", None, "roles:read"),
    ("POST", "/v1/roles", {"name": "matrix-{n}", "permissions": []}, "roles:create"),
    ("PATCH", f"/v1/roles/{MISSING}", {"name": "renamed"}, "roles:update"),
    ("DELETE", f"/v1/roles/{MISSING}", None, "roles:delete"),
    ("GET", "/v1/permissions", None, "roles:read"),
    ("GET", "/v1/api-keys", None, "api_keys:read"),
    ("POST", "/v1/api-keys", {"name": "matrix", "scopes": ["read"]}, "api_keys:create"),
    ("DELETE", f"/v1/api-keys/{MISSING}", None, "api_keys:delete"),
    ("GET", "/v1/tenant", None, "tenant:read"),
    ("PATCH", "/v1/tenant", {"time_zone": "Europe/Berlin"}, "tenant:update"),
    ("GET", "/v1/tenant/usage", None, "tenant:read"),
    ("GET", "/v1/audit-log", None, "audit_log:read"),
]


async def test_role_route_matrix(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    mismatches = []
    for n, (method, path, body, permission) in enumerate(MATRIX):
        for role, (_, granted) in DEFAULT_ROLES.items():
            payload = {k: v.format(n=f"{role}-{n}") if isinstance(v, str) else v for k, v in (body or {}).items()}
            response = await client.request(method, path, json=payload or None, headers=team.auth(role))
            allowed = permission in granted
            if allowed and response.status_code in (401, 403):
                mismatches.append(f"{role} refused {method} {path}: {response.status_code} {response.text}")
            refused_right = response.status_code == 403 and response.json().get("permission") == permission
            if not allowed and not refused_right:
                mismatches.append(f"{role} not refused {method} {path}: {response.status_code}")
    assert mismatches == []


def test_default_roles_match_the_brief() -> None:
    owner, admin, sales, analyst, viewer = (DEFAULT_ROLES[r][1] for r in DEFAULT_ROLES)
    assert {"billing:update", "tenant:delete"} <= owner
    assert not {p for p in admin if p.startswith("billing:")} and "tenant:delete" not in admin
    assert "users:update" in admin
    assert {"campaigns:create", "bookings:update", "sponsors:delete", "analytics:read"} <= sales
    assert "podcasts:create" not in sales and "users:read" not in sales
    assert "analytics:export" in analyst and not any(p.endswith((":create", ":update", ":delete")) for p in analyst)
    assert all(p.endswith(":read") for p in viewer) and "analytics:export" not in viewer


async def test_no_escalation_through_roles(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    # an admin may not define a role holding billing permissions it lacks …
    role = await client.post(
        "/v1/roles", json={"name": "billing-boss", "permissions": ["billing:update"]}, headers=team.auth("admin")
    )
    assert role.status_code == 403 and role.json()["reason"] == "permission_escalation"
    # … nor make anyone an owner
    roles = (await client.get("/v1/roles", headers=team.auth("owner"))).json()["items"]
    owner_role = next(r["id"] for r in roles if r["name"] == "owner")
    promote = await client.put(
        f"/v1/users/{team.user_ids['viewer']}/roles", json={"role_ids": [owner_role]}, headers=team.auth("admin")
    )
    assert promote.status_code == 403 and promote.json()["missing"]
    # the owner may
    allowed = await client.put(
        f"/v1/users/{team.user_ids['viewer']}/roles", json={"role_ids": [owner_role]}, headers=team.auth("owner")
    )
    assert allowed.status_code == 200 and allowed.json()["roles"] == ["owner"]


async def test_owner_safety_rules(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    self_off = await client.delete(f"/v1/users/{team.user_ids['owner']}", headers=team.auth("owner"))
    assert self_off.status_code == 409
    roles = (await client.get("/v1/roles", headers=team.auth("owner"))).json()["items"]
    admin_role = next(r["id"] for r in roles if r["name"] == "admin")
    demote = await client.put(
        f"/v1/users/{team.user_ids['owner']}/roles", json={"role_ids": [admin_role]}, headers=team.auth("owner")
    )
    assert demote.status_code == 409 and "at least one active owner" in demote.json()["detail"]
    system = await client.delete(f"/v1/roles/{admin_role}", headers=team.auth("owner"))
    assert system.status_code == 409


async def test_deactivated_user_is_locked_out(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    assert (await client.delete(f"/v1/users/{team.user_ids['sales']}", headers=team.auth("owner"))).status_code == 204
    assert (await client.get("/v1/me", headers=team.auth("sales"))).status_code == 401
    login = await client.post("/v1/auth/login", json={"email": team.emails["sales"], "password": "x" * 12})
    assert login.status_code == 401
    user = (await client.get(f"/v1/users/{team.user_ids['sales']}", headers=team.auth("owner"))).json()
    assert user["is_active"] is False


@pytest.mark.parametrize("kind", ["users", "roles", "api-keys"])
async def test_another_tenants_resources_answer_404(make_team, client: httpx.AsyncClient, kind: str) -> None:  # type: ignore[no-untyped-def]
    mine: Team = await make_team()
    theirs: Team = await make_team()
    if kind == "users":
        target = str(theirs.user_ids["viewer"])
    elif kind == "roles":
        target = (await client.get("/v1/roles", headers=theirs.auth("owner"))).json()["items"][0]["id"]
    else:
        created = await client.post(
            "/v1/api-keys", json={"name": "theirs", "scopes": ["read"]}, headers=theirs.auth("owner")
        )
        target = created.json()["id"]
    for method, body in (("GET", None), ("PATCH", {"name": "hijack"}), ("DELETE", None)):
        response = await client.request(method, f"/v1/{kind}/{target}", json=body, headers=mine.auth("owner"))
        missing = await client.request(method, f"/v1/{kind}/{uuid.uuid4()}", json=body, headers=mine.auth("owner"))
        assert response.status_code == 404, (method, response.text)
        assert response.json()["detail"] == missing.json()["detail"]
    # and it is untouched for its own tenant
    still = await client.get(f"/v1/{kind}/{target}", headers=theirs.auth("owner"))
    assert still.status_code == 200 and still.json()["name"] != "hijack"


async def test_admin_cannot_deactivate_an_owner(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    roles = (await client.get("/v1/roles", headers=team.auth("owner"))).json()["items"]
    owner_role = next(r["id"] for r in roles if r["name"] == "owner")
    await client.put(
        f"/v1/users/{team.user_ids['viewer']}/roles", json={"role_ids": [owner_role]}, headers=team.auth("owner")
    )
    refused = await client.delete(f"/v1/users/{team.user_ids['owner']}", headers=team.auth("admin"))
    assert refused.status_code == 403 and refused.json()["reason"] == "permission_escalation"
    assert (await client.delete(f"/v1/users/{team.user_ids['sales']}", headers=team.auth("admin"))).status_code == 204


async def test_ingest_key_cannot_change_settings(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    key = (
        await client.post("/v1/api-keys", json={"name": "i", "scopes": ["ingest"]}, headers=team.auth("owner"))
    ).json()
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    refused = await client.patch("/v1/me/email-preferences", json={"product_news": True}, headers=headers)
    assert refused.status_code == 403 and refused.json()["reason"] == "api_key_scope"


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    make_team,  # type: ignore[no-untyped-def]
    db: Database,
    settings: Settings,
    client: httpx.AsyncClient,
) -> None:
    # given a tenant with two owners, A and B
    team = await make_team()
    owner_a = team.user_ids["owner"]
    roles = (await client.get("/v1/roles", headers=team.auth("owner"))).json()["items"]
    owner_role = next(r["id"] for r in roles if r["name"] == "owner")
    viewer_role = next(r["id"] for r in roles if r["name"] == "viewer")
    owner_b = team.user_ids["admin"]
    promoted = await client.put(
        f"/v1/users/{owner_b}/roles", json={"role_ids": [owner_role]}, headers=team.auth("owner")
    )
    assert promoted.status_code == 200, promoted.text

    async def demote(actor_id: uuid.UUID, target_id: uuid.UUID, hold: asyncio.Event | None) -> None:
        async with auth.acting_for(db, team.tenant_id, write=True) as scope:
            principal = auth.principal_of(
                scope.session, await auth.resolve(scope.session, team.tenant_id, actor_id, None), write=True
            )
            target = await identity.get_user(scope.session, target_id)
            await identity.set_user_roles(scope.session, principal, target, [uuid.UUID(viewer_role)])
            if hold is not None:
                await hold.wait()  # A's transaction stays open while B's demotion runs

    # when A demotes B and, before A commits, B demotes A
    release = asyncio.Event()
    first = asyncio.create_task(demote(owner_a, owner_b, release))
    await asyncio.sleep(0.3)
    second = asyncio.create_task(demote(owner_b, owner_a, None))
    await asyncio.sleep(0.5)
    release.set()
    await first
    # then B's demotion is refused, and A is still an owner
    with pytest.raises(Conflict):
        await second
    async with db.tenant_transaction(team.tenant_id) as session:
        assert "owner" in await identity.roles_of(session, owner_a)
