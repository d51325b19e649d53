"""The campaign stage machine: every legal and illegal change from every stage, the history and outbox
rows each change writes in its transaction, and changes that race."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo import service as demo
from tests.factories.identity import Team, bearer
from tests.factories.sponsorship import PATH_TO, make_campaign, make_sponsor

STAGES = ("draft", "active", "paused", "completed", "cancelled")
# The brief's machine, written out independently of the code under test.
LEGAL = {
    ("draft", "active"),
    ("active", "paused"),
    ("paused", "active"),
    ("active", "completed"),
    ("paused", "completed"),
    ("draft", "cancelled"),
    ("active", "cancelled"),
    ("paused", "cancelled"),
}


def allowed_from(stage: str) -> list[str]:
    return [to for to in STAGES if (stage, to) in LEGAL]


async def outbox_rows(db: Database, team: Team, campaign_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with db.tenant_transaction(team.tenant_id) as session:
        rows = await session.execute(
            text(
                "SELECT event_type, payload FROM outbox_events WHERE payload->>'campaign_id' = :id "
                "ORDER BY created_at, id"
            ),
            {"id": campaign_id},
        )
        return [(row.event_type, row.payload) for row in rows]


async def history(client: httpx.AsyncClient, team: Team, campaign_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/campaigns/{campaign_id}/history", headers=team.auth("viewer"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.mark.parametrize(("from_stage", "to_stage"), list(itertools.product(STAGES, STAGES)))
async def test_every_transition_from_every_stage(
    from_stage: str,
    to_stage: str,
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
    db: Database,
) -> None:
    # given a campaign brought to from_stage
    team: Team = await make_team()
    campaign = await make_campaign(client, team, stage=from_stage)
    assert campaign["stage"] == from_stage
    assert campaign["next_stages"] == allowed_from(from_stage)
    history_before = await history(client, team, campaign["id"])
    events_before = await outbox_rows(db, team, campaign["id"])
    assert len(history_before) == 1 + len(PATH_TO[from_stage])
    # when the sales user asks for to_stage
    response = await client.post(
        f"/v1/campaigns/{campaign['id']}/transition",
        json={"stage": to_stage, "reason": f"{from_stage} to {to_stage}"},
        headers=team.auth("sales"),
    )
    history_after = await history(client, team, campaign["id"])
    events_after = await outbox_rows(db, team, campaign["id"])
    current = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=team.auth("viewer"))).json()
    if (from_stage, to_stage) in LEGAL:
        # then the campaign moved, one history row and one outbox row say so
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["stage"], current["stage"]) == (to_stage, to_stage)
        assert body["next_stages"] == allowed_from(to_stage)
        assert body["stage_changed_at"] > campaign["stage_changed_at"]
        assert len(history_after) == len(history_before) + 1
        newest = history_after[0]
        assert (newest["from_stage"], newest["to_stage"]) == (from_stage, to_stage)
        assert newest["reason"] == f"{from_stage} to {to_stage}"
        assert (newest["actor_type"], newest["actor_id"]) == ("user", str(team.user_ids["sales"]))
        assert newest["changed_at"] == body["stage_changed_at"]
        assert len(events_after) == len(events_before) + 1
        event_type, payload = events_after[-1]
        assert event_type == "campaign.stage_changed"
        assert (payload["from"], payload["to"], payload["reason"]) == (
            from_stage,
            to_stage,
            f"{from_stage} to {to_stage}",
        )
        assert payload["change_id"] == newest["id"]
    else:
        # then a 409 problem names the stages allowed, and nothing was written
        assert response.status_code == 409, response.text
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem["reason"] == "illegal_transition"
        assert (problem["from_stage"], problem["to_stage"]) == (from_stage, to_stage)
        assert problem["allowed"] == allowed_from(from_stage)
        for stage in allowed_from(from_stage):
            assert stage in problem["detail"]
        if not allowed_from(from_stage):
            assert "final" in problem["detail"]
        assert current["stage"] == from_stage
        assert history_after == history_before
        assert events_after == events_before


async def test_creation_starts_in_draft_with_history_and_event(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
    db: Database,
) -> None:
    team: Team = await make_team()
    sponsor_id = await make_sponsor(client, team)
    created = await client.post(
        "/v1/campaigns",
        json={"name": "Launch", "sponsor_id": sponsor_id, "stage": "active"},
        headers=team.auth("sales"),
    )
    assert created.status_code == 422  # the stage is not the client's to set
    campaign = await make_campaign(
        client, team, name="Launch", sponsor_id=sponsor_id, start_date="2026-03-01", end_date="2026-03-31"
    )
    assert (campaign["stage"], campaign["sponsor_id"], campaign["start_date"]) == ("draft", sponsor_id, "2026-03-01")
    rows = await history(client, team, campaign["id"])
    assert len(rows) == 1
    assert (rows[0]["from_stage"], rows[0]["to_stage"], rows[0]["reason"]) == (None, "draft", None)
    assert (rows[0]["actor_type"], rows[0]["actor_id"]) == ("user", str(team.user_ids["sales"]))
    assert await outbox_rows(db, team, campaign["id"]) == [
        (
            "campaign.created",
            {"campaign_id": campaign["id"], "name": "Launch", "sponsor_id": sponsor_id, "stage": "draft"},
        )
    ]


async def test_a_campaigns_whole_life_is_kept(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
    db: Database,
) -> None:
    team: Team = await make_team()
    campaign = await make_campaign(client, team)
    steps = [
        ("active", "sales", "IO signed"),
        ("paused", "admin", "creative review"),
        ("active", "owner", None),
        ("completed", "sales", "delivered"),
    ]
    for stage, role, reason in steps:
        body = {"stage": stage} if reason is None else {"stage": stage, "reason": reason}
        moved = await client.post(f"/v1/campaigns/{campaign['id']}/transition", json=body, headers=team.auth(role))
        assert moved.status_code == 200, moved.text
    rows = await history(client, team, campaign["id"])
    assert [(r["from_stage"], r["to_stage"], r["reason"], r["actor_id"]) for r in reversed(rows)] == [
        (None, "draft", None, str(team.user_ids["sales"])),
        ("draft", "active", "IO signed", str(team.user_ids["sales"])),
        ("active", "paused", "creative review", str(team.user_ids["admin"])),
        ("paused", "active", None, str(team.user_ids["owner"])),
        ("active", "completed", "delivered", str(team.user_ids["sales"])),
    ]
    assert [r["changed_at"] for r in rows] == sorted((r["changed_at"] for r in rows), reverse=True)
    events = await outbox_rows(db, team, campaign["id"])
    assert [(t, p.get("from"), p.get("to")) for t, p in events] == [
        ("campaign.created", None, None),
        ("campaign.stage_changed", "draft", "active"),
        ("campaign.stage_changed", "active", "paused"),
        ("campaign.stage_changed", "paused", "active"),
        ("campaign.stage_changed", "active", "completed"),
    ]
    # the history pages like every list
    first = (
        await client.get(f"/v1/campaigns/{campaign['id']}/history", params={"limit": 2}, headers=team.auth("viewer"))
    ).json()
    second = (
        await client.get(
            f"/v1/campaigns/{campaign['id']}/history",
            params={"limit": 5, "cursor": first["next_cursor"]},
            headers=team.auth("viewer"),
        )
    ).json()
    assert [r["id"] for r in first["items"] + second["items"]] == [r["id"] for r in rows]
    assert second["next_cursor"] is None
    # and each change is in the audit log
    audit = await client.get(
        "/v1/audit-log", params={"entity_id": campaign["id"], "action": "transition"}, headers=team.auth("owner")
    )
    assert audit.status_code == 200
    assert len(audit.json()["items"]) == 4


async def test_stage_cannot_change_through_patch(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    team: Team = await make_team()
    campaign = await make_campaign(client, team)
    for body in ({"stage": "active"}, {"name": "Renamed", "stage": "completed"}, {"stage_changed_at": "2026-01-01"}):
        response = await client.patch(f"/v1/campaigns/{campaign['id']}", json=body, headers=team.auth("sales"))
        assert response.status_code == 422, body
        assert "transition" in response.text
    current = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=team.auth("sales"))).json()
    assert (current["stage"], current["name"]) == ("draft", "Campaign")


async def test_transition_input_and_tenancy(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    mine: Team = await make_team()
    theirs: Team = await make_team()
    campaign = await make_campaign(client, theirs)
    path = f"/v1/campaigns/{campaign['id']}/transition"
    # another tenant's campaign is missing, exactly like one that does not exist
    foreign = await client.post(path, json={"stage": "active"}, headers=mine.auth("owner"))
    missing = await client.post(
        f"/v1/campaigns/{uuid.uuid4()}/transition", json={"stage": "active"}, headers=mine.auth("owner")
    )
    assert (foreign.status_code, missing.status_code) == (404, 404)
    assert foreign.json()["detail"] == missing.json()["detail"]
    for body in ({"stage": "archived"}, {}, {"stage": "active", "reason": "x" * 2001}, {"stage": "active", "x": 1}):
        assert (await client.post(path, json=body, headers=theirs.auth("sales"))).status_code == 422, body
    still = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=theirs.auth("sales"))).json()
    assert still["stage"] == "draft"


async def test_racing_changes_cannot_both_start_from_the_same_stage(
    client: httpx.AsyncClient,
    make_team,  # type: ignore[no-untyped-def]
) -> None:
    # given an active campaign, when two final changes arrive at once
    team: Team = await make_team()
    for _ in range(3):
        campaign = await make_campaign(client, team, stage="active")
        path = f"/v1/campaigns/{campaign['id']}/transition"
        answers = await asyncio.gather(
            client.post(path, json={"stage": "completed"}, headers=team.auth("sales")),
            client.post(path, json={"stage": "cancelled"}, headers=team.auth("admin")),
        )
        # then exactly one wins and the other sees a final stage
        assert sorted(a.status_code for a in answers) == [200, 409]
        rows = await history(client, team, campaign["id"])
        assert [r["from_stage"] for r in rows[:2]] == ["active", "draft"]


async def test_the_demo_has_every_stage_with_history_and_bookings_on_every_podcast(
    owner_db: Database, db: Database, settings: Settings, client: httpx.AsyncClient
) -> None:
    # given the demo seeded twice
    await demo.seed(owner_db, db, settings)
    summary = await demo.seed(owner_db, db, settings)
    _, email, password = next(login for login in summary.logins if login[0] == "sales")
    token = (await client.post("/v1/auth/login", json={"email": email, "password": password})).json()["access_token"]
    headers = bearer(token)
    # then it has its sponsors once, and a campaign in every stage with the history that led there
    sponsors = (await client.get("/v1/sponsors", headers=headers)).json()["items"]
    assert len(sponsors) == 3
    campaigns = (await client.get("/v1/campaigns", headers=headers)).json()["items"]
    assert sorted(c["stage"] for c in campaigns) == sorted(STAGES)
    podcasts = {p["id"] for p in (await client.get("/v1/podcasts", headers=headers)).json()["items"]}
    for campaign in campaigns:
        rows = (await client.get(f"/v1/campaigns/{campaign['id']}/history", headers=headers)).json()["items"]
        assert [r["to_stage"] for r in rows][-1] == "draft" and rows[0]["to_stage"] == campaign["stage"]
        assert all(newer["from_stage"] == older["to_stage"] for newer, older in itertools.pairwise(rows))
        assert all((older["to_stage"], newer["to_stage"]) in LEGAL for newer, older in itertools.pairwise(rows))
        assert all((r["actor_type"], r["actor_id"]) == ("system", "demo") for r in rows)
        bookings = (await client.get(f"/v1/campaigns/{campaign['id']}/bookings", headers=headers)).json()["items"]
        assert {b["podcast_id"] for b in bookings} == podcasts
    completed = next(c for c in campaigns if c["stage"] == "completed")
    bookings = (await client.get(f"/v1/campaigns/{completed['id']}/bookings", headers=headers)).json()["items"]
    assert sum(1 for b in bookings if b["make_good_of"]) == 1
