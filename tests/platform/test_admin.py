"""Platform admin routes: login, tenants across the platform, status and tier, global flags, tokens."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid

import httpx
from sqlalchemy import select

from castmetrics.app import create_app
from castmetrics.audit.models import AuditEntry
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.identity import throttle
from castmetrics.observability import configure_logging
from castmetrics.platform.models import PlatformAdmin
from tests.factories.identity import PASSWORD, bearer, signup
from tests.factories.platform import Operator
from tests.support.http import asgi_client


async def _admin_audit(owner_db: Database, tenant_id: str) -> list[AuditEntry]:
    async with owner_db.transaction() as session:
        entries = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.tenant_id == uuid.UUID(tenant_id), AuditEntry.actor_type == "platform_admin")
            .order_by(AuditEntry.occurred_at, AuditEntry.id)
        )
        return list(entries)


async def test_login_issues_a_platform_token(
    http: httpx.AsyncClient, operator: Operator, owner_db: Database, settings: Settings
) -> None:
    answer = await http.post("/v1/admin/login", json={"email": operator.email.upper(), "password": PASSWORD})
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "bearer"
    assert answer.json()["expires_in"] == settings.access_token_minutes * 60
    async with owner_db.transaction() as session:
        admin = await session.get(PlatformAdmin, operator.id)
        assert admin is not None and admin.last_login_at is not None
    for body in (
        {"email": operator.email, "password": "not the password at all"},
        {"email": "nobody@castmetrics.example.com", "password": PASSWORD},
    ):
        refused = await http.post("/v1/admin/login", json=body)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"


async def test_login_has_its_own_throttle(http: httpx.AsyncClient, operator: Operator, owner_db: Database) -> None:
    # given as many recent failures for this email, from this client's address, as the platform login
    # tolerates (the ASGI test client's address is 127.0.0.1)
    async with owner_db.transaction() as session:
        for _ in range(throttle.BLOCK_AFTER):
            await throttle.record_failure(session, throttle.keys_for(operator.email, "127.0.0.1", realm="platform"))
    # then even the right password is refused until the window ends
    refused = await http.post("/v1/admin/login", json={"email": operator.email, "password": PASSWORD})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0


async def test_admin_sees_every_tenant(http: httpx.AsyncClient, operator: Operator, make_tenant) -> None:  # type: ignore[no-untyped-def]
    first = (await signup(http))["tenant"]
    second = (await signup(http))["tenant"]
    third = await make_tenant(name="Quiet Network")
    await http.patch(f"/v1/admin/tenants/{third.id}", json={"status": "suspended"}, headers=operator.headers)

    listed = await http.get("/v1/admin/tenants", headers=operator.headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["items"]] == [str(third.id), second["id"], first["id"]]
    suspended = await http.get("/v1/admin/tenants", params={"status": "suspended"}, headers=operator.headers)
    assert [t["id"] for t in suspended.json()["items"]] == [str(third.id)]
    page = await http.get("/v1/admin/tenants", params={"limit": 2}, headers=operator.headers)
    rest = await http.get(
        "/v1/admin/tenants", params={"limit": 2, "cursor": page.json()["next_cursor"]}, headers=operator.headers
    )
    assert [t["id"] for t in rest.json()["items"]] == [first["id"]] and rest.json()["next_cursor"] is None
    one = await http.get(f"/v1/admin/tenants/{first['id']}", headers=operator.headers)
    assert (one.status_code, one.json()["slug"]) == (200, first["slug"])


async def test_suspended_tenant_may_read_but_not_write(
    http: httpx.AsyncClient, operator: Operator, owner_db: Database
) -> None:
    signed_up = await signup(http)
    tenant_id, owner = signed_up["tenant"]["id"], bearer(signed_up["access_token"])
    # when the operator suspends the tenant
    path = f"/v1/admin/tenants/{tenant_id}"
    suspended = await http.patch(path, json={"status": "suspended"}, headers=operator.headers)
    assert (suspended.status_code, suspended.json()["status"]) == (200, "suspended")
    # then its writes answer 403, its reads still work
    write = await http.put("/v1/feature-flags/custom_roles", json={"enabled": False}, headers=owner)
    assert write.status_code == 403 and write.json()["reason"] == "tenant_suspended"
    assert (await http.get("/v1/feature-flags", headers=owner)).status_code == 200
    # and re-activated, it writes again
    await http.patch(path, json={"status": "active"}, headers=operator.headers)
    assert (await http.put("/v1/feature-flags/custom_roles", json={"enabled": False}, headers=owner)).status_code == 200
    # each decision is in the tenant's audit log under the operator's id
    entries = await _admin_audit(owner_db, tenant_id)
    assert [(e.actor_id, e.action, e.changes["status"]) for e in entries] == [
        (str(operator.id), "update", {"before": "active", "after": "suspended"}),
        (str(operator.id), "update", {"before": "suspended", "after": "active"}),
    ]
    # which the tenant can read too
    log = await http.get("/v1/audit-log", params={"actor_id": str(operator.id)}, headers=owner)
    assert {e["actor_type"] for e in log.json()["items"]} == {"platform_admin"}


async def test_tier_change_is_audited(http: httpx.AsyncClient, operator: Operator, owner_db: Database) -> None:
    signed_up = await signup(http)
    tenant_id, owner = signed_up["tenant"]["id"], bearer(signed_up["access_token"])
    changed = await http.patch(
        f"/v1/admin/tenants/{tenant_id}", json={"subscription_tier": "pro"}, headers=operator.headers
    )
    assert (changed.status_code, changed.json()["subscription_tier"]) == (200, "pro")
    assert (await http.get("/v1/tenant", headers=owner)).json()["subscription_tier"] == "pro"
    # an unchanged tier is not a change
    await http.patch(f"/v1/admin/tenants/{tenant_id}", json={"subscription_tier": "pro"}, headers=operator.headers)
    entries = await _admin_audit(owner_db, tenant_id)
    assert [(e.actor_id, e.entity_type, e.changes) for e in entries] == [
        (str(operator.id), "tenant", {"subscription_tier": {"before": "free", "after": "pro"}})
    ]


async def test_global_flags_reach_tenants_at_once(http: httpx.AsyncClient, operator: Operator) -> None:
    owner = bearer((await signup(http))["access_token"])
    assert (await http.get("/v1/feature-flags", headers=owner)).json() == {"custom_roles": True}  # now cached
    created = await http.post(
        "/v1/admin/feature-flags", json={"name": "sponsor_portal", "description": "Sponsors log in"},
        headers=operator.headers,
    )  # fmt: skip
    assert created.status_code == 201
    assert (created.json()["name"], created.json()["enabled"]) == ("sponsor_portal", False)
    effective = (await http.get("/v1/feature-flags", headers=owner)).json()
    assert effective == {"custom_roles": True, "sponsor_portal": False}

    path = "/v1/admin/feature-flags/sponsor_portal"
    updated = await http.patch(path, json={"enabled": True}, headers=operator.headers)
    assert updated.status_code == 200
    assert (updated.json()["enabled"], updated.json()["description"]) == (True, "Sponsors log in")
    assert (await http.get("/v1/feature-flags", headers=owner)).json()["sponsor_portal"] is True
    # a tenant's override still wins over the new default
    await http.put("/v1/feature-flags/sponsor_portal", json={"enabled": False}, headers=owner)
    assert (await http.get("/v1/feature-flags", headers=owner)).json()["sponsor_portal"] is False

    listed = await http.get("/v1/admin/feature-flags", headers=operator.headers)
    assert [f["name"] for f in listed.json()["items"]] == ["custom_roles", "sponsor_portal"]
    assert (await http.delete(path, headers=operator.headers)).status_code == 204
    assert (await http.get("/v1/feature-flags", headers=owner)).json() == {"custom_roles": True}


async def test_global_flag_changes_are_logged_with_the_admin(http: httpx.AsyncClient, operator: Operator) -> None:
    configure_logging("INFO", json=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    try:
        await http.post("/v1/admin/feature-flags", json={"name": "logged_flag"}, headers=operator.headers)
        await http.delete("/v1/admin/feature-flags/logged_flag", headers=operator.headers)
    finally:
        handler.setStream(sys.stderr)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    changes = [(line["event"], line["flag"], line["actor_type"], line["actor_id"]) for line in lines if "flag" in line]
    assert changes == [
        ("flags.created", "logged_flag", "platform_admin", str(operator.id)),
        ("flags.deleted", "logged_flag", "platform_admin", str(operator.id)),
    ]


async def test_tokens_do_not_cross_between_tenants_and_the_platform(
    http: httpx.AsyncClient, operator: Operator
) -> None:
    owner = bearer((await signup(http))["access_token"])
    for path in ("/v1/admin/tenants", "/v1/admin/feature-flags"):
        assert (await http.get(path, headers=owner)).status_code == 401
        assert (await http.get(path)).status_code == 401
    assert (await http.post("/v1/admin/feature-flags", json={"name": "sneaky"}, headers=owner)).status_code == 401
    for path in ("/v1/feature-flags", "/v1/me", "/v1/tenant"):
        refused = await http.get(path, headers=operator.headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"


async def test_bad_input_answers_problems(http: httpx.AsyncClient, operator: Operator, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    await http.patch(f"/v1/admin/tenants/{tenant.id}", json={"status": "cancelled"}, headers=operator.headers)
    h = operator.headers
    cases = [
        (http.patch(f"/v1/admin/tenants/{tenant.id}", json={"status": "sleeping"}, headers=h), 422),
        (http.patch(f"/v1/admin/tenants/{tenant.id}", json={"plan": "pro"}, headers=h), 422),
        (http.patch(f"/v1/admin/tenants/{tenant.id}", json={"subscription_tier": "gold"}, headers=h), 422),
        (http.patch(f"/v1/admin/tenants/{tenant.id}", json={"status": "suspended"}, headers=h), 409),
        (http.get(f"/v1/admin/tenants/{uuid.uuid4()}", headers=h), 404),
        (http.get("/v1/admin/tenants/not-a-uuid", headers=h), 422),
        (http.get("/v1/admin/tenants", params={"status": "sleeping"}, headers=h), 422),
        (http.post("/v1/admin/feature-flags", json={"name": "custom_roles"}, headers=h), 409),
        (http.post("/v1/admin/feature-flags", json={"name": "Not-A-Flag"}, headers=h), 422),
        (http.post("/v1/admin/feature-flags", json={"name": "ok_name", "colour": "red"}, headers=h), 422),
        (http.patch("/v1/admin/feature-flags/no_such_flag", json={"enabled": True}, headers=h), 404),
        (http.delete("/v1/admin/feature-flags/custom_roles", headers=h), 409),
        (http.post("/v1/admin/login", json={"email": "not an email", "password": "x"}), 422),
    ]
    for request, expected in cases:
        response = await request
        assert response.status_code == expected, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert (await http.get(f"/v1/admin/tenants/{tenant.id}", headers=h)).json()["status"] == "cancelled"


async def test_without_an_owner_database_admin_routes_are_unavailable(
    settings: Settings, db: Database, runtime_url: str
) -> None:
    runtime_only = settings.model_copy(update={"database_url": None, "app_database_url": runtime_url})
    app = create_app(runtime_only, database=db)
    async with asgi_client(app) as client:
        for response in (
            await client.get("/v1/admin/tenants", headers=bearer("anything")),
            await client.post("/v1/admin/login", json={"email": "ops@example.com", "password": PASSWORD}),
        ):
            assert response.status_code == 503
            assert response.json()["detail"] == "platform administration needs DATABASE_URL"
