"""The workflows API: CRUD with step validation and the quota, the signing secret, executions
(list, show, cancel, re-run, manual runs), permissions, tenant isolation and the audit trail."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.workflows import engine
from castmetrics.workflows.api_schemas import MAX_PAYLOAD_BYTES, RunIn
from castmetrics.workflows.models import WorkflowExecution
from castmetrics.workflows.schemas import MAX_STEPS
from tests.factories.identity import Team
from tests.factories.workflows import FLAG_STEPS, create_workflow, run, workflow_body

# --- helpers -------------------------------------------------------------------------------------


async def show(client: httpx.AsyncClient, team: Team, workflow_id: str, execution_id: str) -> dict[str, Any]:
    shown = await client.get(f"/v1/workflows/{workflow_id}/executions/{execution_id}", headers=team.auth("viewer"))
    assert shown.status_code == 200, shown.text
    execution: dict[str, Any] = shown.json()
    return execution


async def audit_entries(client: httpx.AsyncClient, team: Team, entity_type: str) -> list[dict[str, Any]]:
    listed = await client.get("/v1/audit-log", params={"entity_type": entity_type}, headers=team.auth("owner"))
    assert listed.status_code == 200, listed.text
    entries: list[dict[str, Any]] = listed.json()["items"]
    return entries


# --- definitions ---------------------------------------------------------------------------------


async def test_crud_round_trip(make_team, client: httpx.AsyncClient, db: Database) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    admin = team.auth("admin")

    # given a workflow created with a webhook step and a condition
    body = workflow_body(
        description="Tell the CRM",
        conditions=[{"field": "to", "operator": "eq", "value": "active"}],
        steps=[{"type": "webhook", "url": "https://crm.example.com/hooks/castmetrics"}],
    )
    created = await client.post("/v1/workflows", json=body, headers=admin)
    assert created.status_code == 201, created.text
    workflow = created.json()
    assert workflow["name"] == "Flag flipper" and workflow["enabled"] is True
    assert workflow["created_by"] == str(team.user_ids["admin"])
    # the stored steps spell out every default
    assert workflow["steps"] == [
        {"type": "webhook", "url": "https://crm.example.com/hooks/castmetrics", "timeout_seconds": 10.0,
         "max_attempts": 3}
    ]  # fmt: skip
    assert workflow["conditions"] == [{"field": "to", "operator": "eq", "value": "active"}]
    path = f"/v1/workflows/{workflow['id']}"

    # when it is read back, then it is the same (without the secret)
    fetched = (await client.get(path, headers=team.auth("viewer"))).json()
    assert fetched == {k: v for k, v in workflow.items() if k != "secret"}

    # when it is patched, only the fields sent change
    patched = await client.patch(
        path, json={"name": "Renamed", "enabled": False, "description": None, "steps": FLAG_STEPS}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    after = patched.json()
    assert (after["name"], after["enabled"], after["description"]) == ("Renamed", False, None)
    assert after["trigger_event"] == "campaign.stage_changed" and after["conditions"] == workflow["conditions"]
    assert [s["type"] for s in after["steps"]] == ["condition", "update_feature_flag"]
    assert after["updated_at"] >= workflow["updated_at"] and "secret" not in after
    assert (await client.get(path, headers=admin)).json() == after

    # when it is deleted, then it and its executions are gone
    execution = await run(client, team, workflow["id"], {"go": False})
    deleted = await client.delete(path, headers=admin)
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await client.get(path, headers=admin)).status_code == 404
    assert (await client.get(f"{path}/executions/{execution['id']}", headers=admin)).status_code == 404
    assert (await client.delete(path, headers=admin)).status_code == 404
    async with db.tenant_transaction(team.tenant_id) as session:
        assert await session.scalar(select(func.count()).select_from(WorkflowExecution)) == 0


async def test_patch_refuses_nulls_unknown_fields_and_bad_steps(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    path = f"/v1/workflows/{workflow['id']}"
    for body, loc in (
        ({"name": None}, ["body", "name"]),
        ({"steps": None}, ["body", "steps"]),
        ({"enabled": None}, ["body", "enabled"]),
        ({"trigger_event": "podcast.exploded"}, ["body", "trigger_event"]),
        ({"secret": "mine"}, ["body", "secret"]),
        ({"steps": []}, ["body", "steps"]),
    ):
        refused = await client.patch(path, json=body, headers=team.auth("admin"))
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["errors"][0]["loc"] == loc, body
    bad_step = await client.patch(
        path, json={"steps": [*FLAG_STEPS, {"type": "delay", "seconds": 0}]}, headers=team.auth("admin")
    )
    assert bad_step.status_code == 400
    assert bad_step.json()["detail"].startswith("steps[2] (delay): seconds: ")
    # nothing changed
    assert (await client.get(path, headers=team.auth("admin"))).json()["steps"] == workflow["steps"]


# --- validation points at the bad step -----------------------------------------------------------


async def test_a_bad_step_is_a_400_naming_the_step(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    steps = [FLAG_STEPS[0], {"type": "webhook", "url": "ftp://example.com/hook"}]
    refused = await client.post("/v1/workflows", json=workflow_body(steps=steps), headers=team.auth("admin"))
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("/validation") and problem["status"] == 400
    assert problem["detail"].startswith("steps[1] (webhook): url: "), problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", "steps", 1, "webhook", "url"]


@pytest.mark.parametrize(
    ("steps", "detail", "loc"),
    [
        (
            [{"type": "teleport", "to": "mars"}],
            "steps[0]: unknown step type 'teleport'; a step's type is one of webhook, email,",
            ["body", "steps", 0],
        ),
        ([{"url": "https://example.com"}], "steps[0]: a step needs a type", ["body", "steps", 0]),
        (
            [FLAG_STEPS[0], {"type": "condition", "field": "go", "colour": "red"}],
            "steps[1] (condition): colour: Extra inputs are not permitted",
            ["body", "steps", 1, "condition", "colour"],
        ),
        (
            [{"type": "email", "to": {"addresses": ["not-an-address"]}, "subject": "Hi", "body": "Hello"}],
            "steps[0] (email): to.addresses[0]: ",
            ["body", "steps", 0, "email", "to", "addresses", 0],
        ),
        (
            [{"type": "webhook", "url": "https://example.com", "max_attempts": 11}],
            "steps[0] (webhook): max_attempts: ",
            ["body", "steps", 0, "webhook", "max_attempts"],
        ),
    ],
)
async def test_step_errors_name_the_step_and_field(  # type: ignore[no-untyped-def]
    make_team, client: httpx.AsyncClient, steps: list[dict[str, Any]], detail: str, loc: list[Any]
) -> None:
    team: Team = await make_team()
    refused = await client.post("/v1/workflows", json=workflow_body(steps=steps), headers=team.auth("admin"))
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"].startswith(detail), refused.json()["detail"]
    assert refused.json()["errors"][0]["loc"] == loc


async def test_other_invalid_definitions_are_422(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    too_many = [{"type": "delay", "seconds": 1}] * (MAX_STEPS + 1)
    for body, loc in (
        (workflow_body(steps=[]), ["body", "steps"]),
        (workflow_body(steps=too_many), ["body", "steps"]),
        (workflow_body(colour="red"), ["body", "colour"]),
        (workflow_body(trigger_event="podcast.exploded"), ["body", "trigger_event"]),
        (workflow_body(name=""), ["body", "name"]),
        (workflow_body(conditions=[{"field": "x", "operator": "like"}]), ["body", "conditions", 0, "operator"]),
        (workflow_body(conditions=[{"field": "x"}] * 21), ["body", "conditions"]),
        ({"name": "No steps", "trigger_event": "episode.published"}, ["body", "steps"]),
    ):
        refused = await client.post("/v1/workflows", json=body, headers=team.auth("admin"))
        assert refused.status_code == 422, (loc, refused.text)
        assert refused.json()["errors"][0]["loc"] == loc
        assert refused.json()["detail"], loc
    listed = await client.get("/v1/workflows", headers=team.auth("admin"))
    assert listed.json()["items"] == []


# --- quota ---------------------------------------------------------------------------------------


async def test_the_free_tier_allows_two_workflows(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team("free")
    first = await create_workflow(client, team)
    await create_workflow(client, team)
    refused = await client.post("/v1/workflows", json=workflow_body(), headers=team.auth("admin"))
    assert refused.status_code == 402
    problem = refused.json()
    assert (problem["quota"], problem["limit"], problem["usage"]) == ("workflows", 2, 2)
    assert "workflows quota" in problem["detail"]
    usage = (await client.get("/v1/tenant/usage", headers=team.auth("owner"))).json()
    assert usage["quotas"]["workflows"] == {"limit": 2, "usage": 2}
    # deleting one makes room again
    assert (await client.delete(f"/v1/workflows/{first['id']}", headers=team.auth("admin"))).status_code == 204
    await create_workflow(client, team)


# --- the signing secret --------------------------------------------------------------------------


async def test_the_secret_is_shown_at_creation_and_on_rotation_only(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    secret = workflow["secret"]
    assert isinstance(secret, str) and len(secret) >= 40
    path = f"/v1/workflows/{workflow['id']}"
    assert "secret" not in (await client.get(path, headers=team.auth("admin"))).json()
    assert "secret" not in (await client.patch(path, json={"name": "x"}, headers=team.auth("admin"))).json()
    assert all(
        "secret" not in w for w in (await client.get("/v1/workflows", headers=team.auth("admin"))).json()["items"]
    )

    rotated = await client.post(f"{path}/rotate-secret", headers=team.auth("admin"))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["id"] == workflow["id"]
    assert rotated.json()["secret"] not in (secret, None) and len(rotated.json()["secret"]) >= 40
    assert (await client.post(f"{path}/rotate-secret", headers=team.auth("viewer"))).status_code == 403

    # the audit log says the secret changed, never what it is
    entries = await audit_entries(client, team, "workflow")
    assert [e["action"] for e in entries] == ["rotate_secret", "update", "create"]
    assert entries[0]["changes"] == {"secret": {"changed": True}}
    assert secret not in str(entries) and rotated.json()["secret"] not in str(entries)


async def test_an_idempotent_repeat_creates_nothing_more(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    headers = {**team.auth("admin"), "Idempotency-Key": "wf-1"}
    first = await client.post("/v1/workflows", json=workflow_body(), headers=headers)
    again = await client.post("/v1/workflows", json=workflow_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json()["id"] == first.json()["id"]
    assert again.json()["secret"] is None  # a secret shown once is never stored for replay
    assert len((await client.get("/v1/workflows", headers=team.auth("admin"))).json()["items"]) == 1


# --- lists ---------------------------------------------------------------------------------------


async def test_list_pages_newest_first_and_filters(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    made = [
        await create_workflow(client, team, name="one", trigger_event="episode.published"),
        await create_workflow(client, team, name="two", trigger_event="campaign.created", enabled=False),
        await create_workflow(client, team, name="three", trigger_event="episode.published"),
    ]
    viewer = team.auth("viewer")
    page = (await client.get("/v1/workflows", params={"limit": 2}, headers=viewer)).json()
    assert [w["name"] for w in page["items"]] == ["three", "two"] and page["next_cursor"]
    rest = (
        await client.get("/v1/workflows", params={"limit": 2, "cursor": page["next_cursor"]}, headers=viewer)
    ).json()
    assert [w["name"] for w in rest["items"]] == ["one"] and rest["next_cursor"] is None

    async def names(**params: Any) -> list[str]:
        listed = await client.get("/v1/workflows", params=params, headers=viewer)
        assert listed.status_code == 200, listed.text
        return [w["name"] for w in listed.json()["items"]]

    assert await names(enabled="false") == ["two"]
    assert await names(enabled="true") == ["three", "one"]
    assert await names(trigger_event="episode.published") == ["three", "one"]
    assert await names(trigger_event="episode.published", enabled="false") == []
    assert await names(trigger_event="conversion.recorded") == []
    for params in ({"trigger_event": "nope"}, {"limit": 0}, {"limit": 501}, {"cursor": "garbage"}):
        assert (await client.get("/v1/workflows", params=params, headers=viewer)).status_code == 422, params
    assert len(made) == 3


# --- executions ----------------------------------------------------------------------------------


async def test_manual_runs_execute_and_list(  # type: ignore[no-untyped-def]
    make_team, client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    team: Team = await make_team()
    # given a disabled workflow whose trigger conditions would never match
    workflow = await create_workflow(client, team, enabled=False, conditions=[{"field": "never", "operator": "exists"}])
    wid = workflow["id"]

    # when it is run by hand twice, then both start pending with the manual trigger
    stopped = await run(client, team, wid, {"go": False})
    assert (stopped["status"], stopped["trigger_event"], stopped["event_id"], stopped["rerun_of"]) == (
        "pending", "manual", None, None,
    )  # fmt: skip
    assert stopped["payload"] == {"go": False} and stopped["results"] == [] and stopped["workflow_id"] == wid
    flipped = await run(client, team, wid, {"go": True, "note": "ünïcode"})
    assert await engine.run_pending(db, settings, team.tenant_id) >= 2

    # then the first stopped at its condition (a success) and the second flipped the flag
    first = await show(client, team, wid, stopped["id"])
    assert first["status"] == "succeeded" and first["finished_at"] and first["started_at"]
    assert [r["status"] for r in first["results"]] == ["stopped"]
    second = await show(client, team, wid, flipped["id"])
    assert second["status"] == "succeeded" and second["step_index"] == 2 and second["error"] is None
    assert [(r["index"], r["type"], r["status"]) for r in second["results"]] == [
        (0, "condition", "succeeded"), (1, "update_feature_flag", "succeeded"),
    ]  # fmt: skip
    flags = (await client.get("/v1/feature-flags", headers=team.auth("viewer"))).json()
    assert flags["custom_roles"] is False

    # the executions list is newest first, filters by status and pages
    executions = f"/v1/workflows/{wid}/executions"
    listed = (await client.get(executions, headers=team.auth("viewer"))).json()
    assert [e["id"] for e in listed["items"]] == [flipped["id"], stopped["id"]]
    page = (await client.get(executions, params={"limit": 1}, headers=team.auth("viewer"))).json()
    assert [e["id"] for e in page["items"]] == [flipped["id"]] and page["next_cursor"]
    rest = (
        await client.get(executions, params={"limit": 1, "cursor": page["next_cursor"]}, headers=team.auth("viewer"))
    ).json()
    assert [e["id"] for e in rest["items"]] == [stopped["id"]] and rest["next_cursor"] is None
    assert (await client.get(executions, params={"status": "failed"}, headers=team.auth("viewer"))).json()[
        "items"
    ] == []
    assert (await client.get(executions, params={"status": "done"}, headers=team.auth("viewer"))).status_code == 422

    # a run needs a JSON object payload
    for body in ({"payload": [1, 2]}, {"payload": "x"}, {"payload": {}, "extra": 1}):
        refused = await client.post(f"/v1/workflows/{wid}/run", json=body, headers=team.auth("admin"))
        assert refused.status_code == 422, body
    empty = await client.post(f"/v1/workflows/{wid}/run", json={}, headers=team.auth("admin"))
    assert empty.status_code == 201 and empty.json()["payload"] == {}


def test_a_run_payload_is_at_most_64_kb() -> None:
    assert RunIn(payload={"x": "a" * (MAX_PAYLOAD_BYTES - 10)}).payload  # 64 KB minus the {"x":""} framing
    with pytest.raises(ValidationError, match="at most 65536"):
        RunIn(payload={"x": "a" * MAX_PAYLOAD_BYTES})
    with pytest.raises(ValidationError):  # counted as stored, in UTF-8
        RunIn(payload={"x": "é" * (MAX_PAYLOAD_BYTES // 2)})


async def test_a_large_run_payload_is_refused(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    refused = await client.post(
        f"/v1/workflows/{workflow['id']}/run",
        json={"payload": {"x": "a" * MAX_PAYLOAD_BYTES}},
        headers=team.auth("admin"),
    )
    # 422 from the payload limit, or 413 where the server's body limit (64 KB in the tests) is smaller
    assert refused.status_code in (413, 422), refused.text
    listed = await client.get(f"/v1/workflows/{workflow['id']}/executions", headers=team.auth("admin"))
    assert listed.json()["items"] == []


async def test_cancel_and_rerun(make_team, client: httpx.AsyncClient, db: Database, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    wid, admin = workflow["id"], team.auth("admin")

    # a pending execution cannot be re-run, but can be cancelled, once
    pending = await run(client, team, wid, {"go": False})
    base = f"/v1/workflows/{wid}/executions/{pending['id']}"
    early = await client.post(f"{base}/rerun", headers=admin)
    assert early.status_code == 409 and early.json()["reason"] == "execution_not_finished"
    cancelled = await client.post(f"{base}/cancel", headers=admin)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"]
    again = await client.post(f"{base}/cancel", headers=admin)
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert await engine.run_pending(db, settings, team.tenant_id) == 0  # nothing runs a cancelled execution
    assert (await show(client, team, wid, pending["id"]))["results"] == []

    # a finished execution is re-run with the same trigger and payload, even with the workflow disabled
    await client.patch(f"/v1/workflows/{wid}", json={"enabled": False}, headers=admin)
    rerun = await client.post(f"{base}/rerun", headers=admin)
    assert rerun.status_code == 201, rerun.text
    copy = rerun.json()
    assert copy["id"] != pending["id"] and copy["rerun_of"] == pending["id"] and copy["status"] == "pending"
    assert (copy["payload"], copy["trigger_event"]) == (pending["payload"], "manual")
    await engine.run_pending(db, settings, team.tenant_id)
    assert (await show(client, team, wid, copy["id"]))["status"] == "succeeded"
    finished = await client.post(f"/v1/workflows/{wid}/executions/{copy['id']}/cancel", headers=admin)
    assert finished.status_code == 409

    # an execution is addressed through its own workflow only
    other = await create_workflow(client, team, name="other")
    assert (await client.get(f"/v1/workflows/{other['id']}/executions/{copy['id']}", headers=admin)).status_code == 404
    for action in ("cancel", "rerun"):
        wrong = await client.post(f"/v1/workflows/{other['id']}/executions/{copy['id']}/{action}", headers=admin)
        assert wrong.status_code == 404, action
    missing = await client.get(f"/v1/workflows/{wid}/executions/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404

    # who ran, cancelled and re-ran what is in the audit log
    entries = await audit_entries(client, team, "workflow_execution")
    assert [(e["action"], e["entity_id"]) for e in entries] == [
        ("rerun", copy["id"]), ("cancel", pending["id"]), ("run", pending["id"]),
    ]  # fmt: skip
    assert all(e["actor_id"] == str(team.user_ids["admin"]) for e in entries)
    assert entries[0]["changes"]["rerun_of"] == {"before": None, "after": pending["id"]}
    assert entries[1]["changes"]["status"]["after"] == "cancelled"


# --- who may do what -----------------------------------------------------------------------------


async def test_permissions(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    execution = await run(client, team, workflow["id"], {"go": False})
    path = f"/v1/workflows/{workflow['id']}"
    viewer = team.auth("viewer")

    # the viewer reads everything
    for url in ("/v1/workflows", path, f"{path}/executions", f"{path}/executions/{execution['id']}"):
        assert (await client.get(url, headers=viewer)).status_code == 200, url

    # and changes nothing
    writes = (
        ("POST", "/v1/workflows", workflow_body()),
        ("PATCH", path, {"name": "x"}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None),
        ("POST", f"{path}/run", {"payload": {}}),
        ("POST", f"{path}/executions/{execution['id']}/cancel", None),
        ("POST", f"{path}/executions/{execution['id']}/rerun", None),
    )
    for method, url, body in writes:
        refused = await client.request(method, url, json=body, headers=viewer)
        assert refused.status_code == 403, (method, url)
        assert refused.json()["permission"].startswith("workflows:")
    create = await client.post("/v1/workflows", json=workflow_body(), headers=viewer)
    assert create.json()["permission"] == "workflows:create"
    run_refused = await client.post(f"{path}/run", json={"payload": {}}, headers=viewer)
    assert run_refused.json()["permission"] == "workflows:update"

    # sales holds no workflow permission at all; no credentials is a 401
    assert (await client.get("/v1/workflows", headers=team.auth("sales"))).status_code == 403
    assert (await client.get("/v1/workflows")).status_code == 401
    assert (await client.get(path, headers=team.auth("owner"))).status_code == 200


async def test_another_tenants_workflows_are_not_found(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team_a: Team = await make_team()
    team_b: Team = await make_team()
    workflow = await create_workflow(client, team_a)
    execution = await run(client, team_a, workflow["id"], {"go": False})
    path = f"/v1/workflows/{workflow['id']}"
    owner_b = team_b.auth("owner")

    requests = (
        ("GET", path, None),
        ("PATCH", path, {"name": "stolen"}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None),
        ("POST", f"{path}/run", {"payload": {}}),
        ("GET", f"{path}/executions", None),
        ("GET", f"{path}/executions/{execution['id']}", None),
        ("POST", f"{path}/executions/{execution['id']}/cancel", None),
        ("POST", f"{path}/executions/{execution['id']}/rerun", None),
    )
    for method, url, body in requests:
        answer = await client.request(method, url, json=body, headers=owner_b)
        assert answer.status_code == 404, (method, url, answer.text)
        assert answer.json()["type"].endswith("/not-found")
    assert (await client.get("/v1/workflows", headers=owner_b)).json()["items"] == []

    # and A's workflow is untouched
    mine = (await client.get(path, headers=team_a.auth("owner"))).json()
    assert mine["name"] == workflow["name"]
    assert (await show(client, team_a, workflow["id"], execution["id"]))["status"] == "pending"


async def test_definition_changes_are_audited(make_team, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    path = f"/v1/workflows/{workflow['id']}"
    await client.patch(path, json={"enabled": False}, headers=team.auth("admin"))
    await client.delete(path, headers=team.auth("owner"))
    entries = await audit_entries(client, team, "workflow")
    assert [(e["action"], e["entity_id"]) for e in entries] == [
        ("delete", workflow["id"]), ("update", workflow["id"]), ("create", workflow["id"]),
    ]  # fmt: skip
    delete, update, create = entries
    assert delete["actor_id"] == str(team.user_ids["owner"])
    assert update["changes"] == {"enabled": {"before": True, "after": False}}
    assert create["changes"]["name"] == {"before": None, "after": "Flag flipper"}
    assert create["changes"]["steps"]["after"][0]["type"] == "condition"
    assert "secret" not in create["changes"] and workflow["secret"] not in str(entries)
