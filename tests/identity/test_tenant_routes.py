"""The current tenant's routes, the audit log route, and tenant status enforced on real routes."""

from __future__ import annotations

import httpx

from castmetrics.auth.principal import Actor
from castmetrics.db.session import Database
from castmetrics.tenancy import service as tenancy
from tests.factories.identity import Team


async def test_read_and_update_the_tenant(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    tenant = (await client.get("/v1/tenant", headers=team.auth("viewer"))).json()
    assert tenant["slug"] == team.slug and tenant["time_zone"] == "UTC"
    updated = await client.patch("/v1/tenant", json={"time_zone": "America/Chicago"}, headers=team.auth("admin"))
    assert updated.status_code == 200 and updated.json()["time_zone"] == "America/Chicago"
    for body in ({"time_zone": "Mars/Base"}, {"slug": "renamed"}, {"name": ""}):
        assert (await client.patch("/v1/tenant", json=body, headers=team.auth("owner"))).status_code == 422, body


async def test_audit_log_lists_and_filters(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    await client.patch("/v1/tenant", json={"name": "Audited"}, headers=team.auth("owner"))
    await client.post(
        "/v1/roles", json={"name": "auditors", "permissions": ["audit_log:read"]}, headers=team.auth("owner")
    )
    everything = (await client.get("/v1/audit-log", headers=team.auth("analyst"))).json()["items"]
    assert everything[0]["entity_type"] == "role" and everything[0]["actor_id"] == str(team.user_ids["owner"])
    tenant_changes = (
        await client.get(
            "/v1/audit-log", params={"entity_type": "tenant", "action": "update"}, headers=team.auth("owner")
        )
    ).json()["items"]
    assert [e["changes"]["name"] for e in tenant_changes] == [{"before": "Team", "after": "Audited"}]
    page = await client.get("/v1/audit-log", params={"limit": 2}, headers=team.auth("owner"))
    assert len(page.json()["items"]) == 2 and page.json()["next_cursor"]
    nxt = await client.get(
        "/v1/audit-log", params={"limit": 2, "cursor": page.json()["next_cursor"]}, headers=team.auth("owner")
    )
    assert {e["id"] for e in nxt.json()["items"]}.isdisjoint({e["id"] for e in page.json()["items"]})
    bad = await client.get("/v1/audit-log", params={"from": "yesterday"}, headers=team.auth("owner"))
    assert bad.status_code == 422
    future = await client.get("/v1/audit-log", params={"from": "2999-01-01"}, headers=team.auth("owner"))
    assert future.json()["items"] == []
    # no secrets in the log: password changes are recorded as changed, never their value
    assert "hash" not in str(everything) and "$2b$" not in str(everything)


async def test_suspended_tenant_reads_but_cannot_write(
    make_team, client: httpx.AsyncClient, owner_db: Database
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    async with owner_db.transaction() as session:
        tenant = await tenancy.get(session, team.tenant_id)
        await tenancy.set_status(session, tenant, "suspended", Actor.system("tests"))
    assert (await client.get("/v1/tenant", headers=team.auth("owner"))).status_code == 200
    refused = await client.patch("/v1/tenant", json={"name": "Nope"}, headers=team.auth("owner"))
    assert refused.status_code == 403 and refused.json()["reason"] == "tenant_suspended"
    async with owner_db.transaction() as session:
        tenant = await tenancy.get(session, team.tenant_id)
        await tenancy.set_status(session, tenant, "cancelled", Actor.system("tests"))
    assert (await client.get("/v1/tenant", headers=team.auth("owner"))).status_code == 403


async def test_user_metrics_count_logins_and_calls(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    for _ in range(3):
        await client.get("/v1/me", headers=team.auth("sales"))
    metrics = (await client.get(f"/v1/users/{team.user_ids['sales']}/metrics", headers=team.auth("owner"))).json()
    assert len(metrics["items"]) == 30
    today = metrics["items"][-1]
    assert today["logins"] == 1 and today["api_calls"] >= 3
    assert all(day["logins"] == 0 for day in metrics["items"][:-1])


async def test_extreme_dates_are_422_not_500(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    for params in ({"to": "9999-12-31"}, {"from": "0001-01-01T00:00:00+14:00"}, {"to": "2026-02-30"}):
        response = await client.get("/v1/audit-log", params=params, headers=team.auth("owner"))
        assert response.status_code in (200, 422), params
    overflow = await client.get("/v1/audit-log", params={"to": "9999-12-31"}, headers=team.auth("owner"))
    assert overflow.status_code == 422 and overflow.headers["content-type"] == "application/problem+json"
