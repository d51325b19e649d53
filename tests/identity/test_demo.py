"""The demo tenant: pro tier, an owner and one user per default role, each able to log in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo import service as demo
from tests.factories.identity import bearer


async def test_demo_seed_is_idempotent_and_logins_work(
    owner_db: Database, db: Database, settings: Settings, client: httpx.AsyncClient
) -> None:
    first = await demo.seed(owner_db, db, settings)
    second = await demo.seed(owner_db, db, settings)
    assert (first.created, second.created) == (True, False)
    assert first.tenant.subscription_tier == "pro"
    assert [role for role, _, _ in second.logins] == ["owner", "admin", "sales", "analyst", "viewer"]
    for role, email, password in second.logins:
        login = await client.post("/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, (role, login.text)
        me = (await client.get("/v1/me", headers=bearer(login.json()["access_token"]))).json()
        assert me["roles"] == [role] and me["tenant"]["slug"] == "demo"
    podcasts = (await client.get("/v1/podcasts", headers=bearer(login.json()["access_token"]))).json()["items"]
    assert len(podcasts) == 3
    counts = []
    now = datetime.now(UTC)
    for podcast in podcasts:
        episodes = await client.get(
            f"/v1/podcasts/{podcast['id']}/episodes",
            params={"limit": 500},
            headers=bearer(login.json()["access_token"]),
        )
        items = episodes.json()["items"]
        counts.append(len(items))
        # the years-old feeds are brought forward once: each show's newest episode came out 2 days ago
        newest = max(datetime.fromisoformat(item["published_at"]) for item in items if item["published_at"])
        assert timedelta(days=1) < now - newest < timedelta(days=3)
    assert sorted(counts) == [6, 8, 54]
