"""Reads write nothing (issue 21): a GET of every API route commits no transaction that was given a
transaction id, i.e. no row was inserted, updated or deleted (``txid_current_if_assigned()`` is null at
commit). The GETs that write by design are listed, with the reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.factories.catalog import make_episode, make_podcast
from tests.factories.identity import Team
from tests.factories.platform import make_operator
from tests.factories.sponsorship import make_booking, make_campaign, make_sponsor
from tests.factories.web import sign_in
from tests.factories.workflows import create_workflow, run
from tests.support.http import asgi_client
from tests.support.routes import api_routes

# GETs that write by design.
WRITES_BY_DESIGN = {
    "/v1/auth/verify-email": "the verification link marks the address verified (and uses up its token)",
}
# Dashboard pages that write by design.
WEB_WRITES = {"/verify-email": "the verification link marks the address verified"}
MISSING = "00000000-0000-4000-8000-000000000000"
# What a route's query string needs to get past validation to its query.
QUERY = {
    "/timeseries": {"metric": "downloads"},
    "/breakdown": {"by": "country"},
}


@pytest.fixture
def cached_app(settings: Settings, db: Database, owner_db: Database) -> FastAPI:
    """The app as deployed: the principal cache on (a GET must not write even when it resolves a principal)."""
    return create_app(settings.model_copy(update={"principal_cache_seconds": 5}), database=db, admin_database=owner_db)


@pytest.fixture
def written() -> Iterator[list[int]]:
    """The transaction ids of the transactions committed while the test runs (none for a read)."""
    found: list[int] = []

    def before_commit(session: Session) -> None:
        xid = session.execute(text("SELECT txid_current_if_assigned()")).scalar()
        if xid is not None:
            found.append(int(xid))

    event.listen(Session, "before_commit", before_commit)
    try:
        yield found
    finally:
        event.remove(Session, "before_commit", before_commit)


async def _ids(client: httpx.AsyncClient, team: Team) -> dict[str, str]:
    podcast = await make_podcast(client, team)
    episode = await make_episode(client, team, podcast)
    sponsor = await make_sponsor(client, team)
    campaign = await make_campaign(client, team, sponsor_id=sponsor)
    booking = await make_booking(client, team, campaign["id"], podcast)
    workflow = await create_workflow(client, team)
    execution = await run(client, team, workflow["id"], {"flag": "new-dashboard"})
    key = await client.post("/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=team.auth("owner"))
    roles = (await client.get("/v1/roles", headers=team.auth("owner"))).json()["items"]
    return {
        "podcast_id": podcast,
        "episode_id": episode,
        "sponsor_id": sponsor,
        "campaign_id": campaign["id"],
        "booking_id": booking["id"],
        "workflow_id": workflow["id"],
        "execution_id": execution["id"],
        "key_id": key.json()["id"],
        "role_id": roles[0]["id"],
        "user_id": str(team.user_ids["admin"]),
        "tenant_id": str(team.tenant_id),
        "scope_id": podcast,
    }


def _fill(path: str, ids: dict[str, Any]) -> str:
    if path.startswith("/v1/analytics/episodes/"):
        ids = {**ids, "scope_id": ids["episode_id"]}
    return re.sub(r"{(\w+)}", lambda m: str(ids.get(m.group(1), MISSING)), path)


async def test_no_get_route_writes_a_row(  # type: ignore[no-untyped-def]
    make_team, cached_app: FastAPI, written: list[int], owner_db: Database, settings: Settings
) -> None:
    async with asgi_client(cached_app) as client:
        team: Team = await make_team()
        ids = await _ids(client, team)
        operator = await make_operator(owner_db, settings, client)
        routes = sorted(
            path for path, methods, _ in api_routes(cached_app) if "GET" in methods and path.startswith("/v1/")
        )
        assert len(routes) > 50
        writers, answered = [], {}
        for path in routes:
            if path in WRITES_BY_DESIGN:
                continue
            query = next((q for suffix, q in QUERY.items() if path.endswith(suffix)), {})
            if path == "/v1/attribution/compare":
                query = {"campaign_id": ids["campaign_id"]}
            headers = operator.headers if path.startswith("/v1/admin/") else team.auth("owner")
            for attempt in range(2):  # the second time with the principal cached
                del written[:]
                response = await client.get(_fill(path, ids), params=query, headers=headers)
                answered[path] = response.status_code
                assert response.status_code < 500, (path, response.text)
                if written:
                    writers.append((path, attempt, response.status_code))
        assert writers == []
        # most routes answered their data, not a refusal: the reads ran their queries
        refused = {path: status for path, status in answered.items() if status != 200}
        assert len(refused) <= 3, refused  # a report's token and an unsubscribe link are not made here


async def test_a_write_is_seen_as_one(  # type: ignore[no-untyped-def]
    make_team, cached_app: FastAPI, written: list[int]
) -> None:
    """The check itself: a PATCH commits a transaction with an id."""
    async with asgi_client(cached_app) as client:
        team: Team = await make_team()
        del written[:]
        changed = await client.patch("/v1/tenant", json={"time_zone": "Europe/Berlin"}, headers=team.auth("owner"))
        assert changed.status_code == 200
        assert len(set(written)) == 1 and written[0] > 0


async def test_no_dashboard_page_writes_a_row(  # type: ignore[no-untyped-def]
    make_team, cached_app: FastAPI, written: list[int]
) -> None:
    """The dashboard's pages read through the API in process: a page view writes nothing either (while its
    session is fresh; renewing an expired session writes a new refresh token by design)."""
    async with asgi_client(cached_app) as client:
        team: Team = await make_team()
        ids = await _ids(client, team)
        signed_in = await sign_in(client, team.emails["owner"])
        assert signed_in.status_code in (302, 303), signed_in.text
        pages = sorted(
            path for path, methods, _ in api_routes(cached_app)
            if "GET" in methods and not path.startswith(("/v1/", "/feeds/", "/static/")) and path not in WEB_WRITES
        )  # fmt: skip
        assert len(pages) > 15
        writers, answered = [], {}
        for path in pages:
            del written[:]
            response = await client.get(_fill(path, ids))
            answered[path] = response.status_code
            assert response.status_code < 500, (path, response.text[:500])
            if written:
                writers.append((path, response.status_code))
        assert writers == []
        assert sum(1 for status in answered.values() if status == 200) > 0.6 * len(answered), answered
