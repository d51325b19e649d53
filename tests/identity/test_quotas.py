"""Quotas: refusals name the quota, thresholds are announced once per period, usage is reported."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from castmetrics.db.session import Database
from tests.factories.identity import Team


async def _invite(client: httpx.AsyncClient, team: Team, n: int) -> httpx.Response:
    return await client.post(
        "/v1/users",
        json={"email": f"extra{n}.{team.slug}@example.com", "name": f"Extra {n}"},
        headers=team.auth("owner"),
    )


async def test_users_quota_refuses_with_402(
    make_team, client: httpx.AsyncClient, db: Database, owner_db: Database
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team(tier="free")  # five users already: over the free tier's 3
    refused = await _invite(client, team, 1)
    assert refused.status_code == 402
    assert refused.headers["content-type"] == "application/problem+json"
    assert (refused.json()["quota"], refused.json()["limit"], refused.json()["usage"]) == ("users", 3, 5)
    users = (await client.get("/v1/users", headers=team.auth("owner"))).json()["items"]
    assert len(users) == 5  # nothing was added
    # an operator override in the tenant's metadata raises the limit
    async with owner_db.transaction() as session:
        await session.execute(
            text("""UPDATE tenants SET metadata = '{"quotas": {"users": 7}}' WHERE id = :t"""), {"t": team.tenant_id}
        )
    assert (await _invite(client, team, 2)).status_code == 201
    assert (await _invite(client, team, 3)).status_code == 201
    assert (await _invite(client, team, 4)).status_code == 402
    async with db.tenant_transaction(team.tenant_id) as session:
        events = (
            (
                await session.execute(
                    text(
                        "SELECT payload FROM outbox_events "
                        "WHERE event_type = 'quota.threshold_reached' ORDER BY created_at"
                    )
                )
            )
            .scalars()
            .all()
        )
    # 6 of 7 crossed 80%, 7 of 7 crossed 100%: each announced once
    assert [(e["threshold"], e["usage"], e["limit"]) for e in events] == [(80, 6, 7), (100, 7, 7)]


async def test_usage_report(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team(tier="pro")
    usage = (await client.get("/v1/tenant/usage", headers=team.auth("viewer"))).json()
    assert usage["subscription_tier"] == "pro"
    assert usage["quotas"]["users"] == {"limit": 25, "usage": 5}
    assert usage["quotas"]["podcasts"]["limit"] == 50
    assert usage["quotas"]["events_per_month"]["limit"] == 10_000_000
    assert usage["ingest_rate_per_second"] == 5_000
