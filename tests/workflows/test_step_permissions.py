"""Workflow steps cannot escalate privileges (issue 26 item 4): a role holding only ``workflows:*`` is
refused (403 naming the missing permissions) when it creates, changes, runs or re-runs a workflow whose
steps act with permissions it lacks, exactly as it is refused doing those things directly."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from castmetrics.auth.principal import Actor
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.flags import service as flags
from castmetrics.identity import service as identity
from castmetrics.workflows import engine
from castmetrics.workflows.auth import required_permissions
from tests.factories.identity import PASSWORD, Team, bearer
from tests.factories.sponsorship import make_campaign

WORKFLOWS_ONLY = ["workflows:create", "workflows:read", "workflows:update", "workflows:delete"]
FLAG_STEP = {"type": "update_feature_flag", "flag": "custom_roles", "enabled": False}


async def _user_with_role(
    client: httpx.AsyncClient, db: Database, settings: Settings, team: Team, role: str, permissions: list[str]
) -> dict[str, str]:
    """A verified user holding only a custom role with ``permissions``, logged in: their headers."""
    created = await client.post(
        "/v1/roles", json={"name": role, "permissions": permissions}, headers=team.auth("owner")
    )
    assert created.status_code == 201, created.text
    email = f"{role}.{uuid.uuid4().hex[:8]}@example.com"
    async with db.tenant_transaction(team.tenant_id) as session:
        await identity.create_user(
            session, settings, team.tenant_id, email=email, name="Automation", password=PASSWORD, role_names=[role],
            actor=Actor.system("tests"), email_verified=True,
        )  # fmt: skip
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return bearer(login.json()["access_token"])


def _workflow(trigger: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "Escalation", "trigger_event": trigger, "steps": list(steps)}


def _refused(response: httpx.Response, *permissions: str) -> None:
    assert response.status_code == 403, response.text
    problem = response.json()
    assert problem["reason"] == "missing_permission" and problem["permissions"] == sorted(permissions)
    assert all(permission in problem["detail"] for permission in permissions)


async def test_a_workflows_only_role_cannot_act_through_steps(
    client: httpx.AsyncClient, db: Database, settings: Settings, make_team
) -> None:  # type: ignore[no-untyped-def]
    # given a role with only the workflows permissions, refused a flag change and a transition directly
    team: Team = await make_team()
    robot = await _user_with_role(client, db, settings, team, "automation", WORKFLOWS_ONLY)
    campaign = await make_campaign(client, team)
    direct_flag = await client.put("/v1/feature-flags/custom_roles", json={"enabled": False}, headers=robot)
    direct_stage = await client.post(
        f"/v1/campaigns/{campaign['id']}/transition", json={"stage": "active"}, headers=robot
    )
    assert (direct_flag.status_code, direct_stage.status_code) == (403, 403)
    stage = {"type": "set_campaign_stage", "stage": "active", "campaign_id": campaign["id"]}

    # when it creates workflows that would do the same, then each is refused, naming what is missing
    _refused(await client.post("/v1/workflows", json=_workflow("campaign.created", stage), headers=robot),
             "campaigns:update")  # fmt: skip
    _refused(await client.post("/v1/workflows", json=_workflow("campaign.created", FLAG_STEP), headers=robot),
             "feature_flags:update")  # fmt: skip
    _refused(
        await client.post("/v1/workflows", json=_workflow("campaign.created", stage, FLAG_STEP), headers=robot),
        "campaigns:update", "feature_flags:update",
    )  # fmt: skip
    # and a webhook or an email would carry out what the event says, which it may not read
    hook = {"type": "webhook", "url": "https://example.org/hook"}
    _refused(await client.post("/v1/workflows", json=_workflow("conversion.recorded", hook), headers=robot),
             "attribution:read")  # fmt: skip
    mail = {"type": "email", "to": {"roles": ["sales"]}, "subject": "Hi", "body": "{{ revenue }}"}
    _refused(await client.post("/v1/workflows", json=_workflow("campaign.created", mail), headers=robot),
             "campaigns:read", "users:read")  # fmt: skip
    # while steps that act on nothing are its to define
    harmless = await client.post(
        "/v1/workflows", json=_workflow("campaign.created", {"type": "delay", "seconds": 5}), headers=robot
    )
    assert harmless.status_code == 201, harmless.text

    # given an admin's workflow that flips the flag and moves the campaign
    made = await client.post("/v1/workflows", json=_workflow("campaign.created", stage, FLAG_STEP),
                             headers=team.auth("admin"))  # fmt: skip
    assert made.status_code == 201, made.text
    workflow = made.json()["id"]
    ran = await client.post(f"/v1/workflows/{workflow}/run", json={"payload": {}}, headers=team.auth("admin"))
    assert ran.status_code == 201
    execution = ran.json()["id"]
    await engine.run_pending(db, settings, team.tenant_id)

    # when the workflows-only role runs it, re-runs it or changes it, then each is refused
    _refused(await client.post(f"/v1/workflows/{workflow}/run", json={"payload": {}}, headers=robot),
             "campaigns:update", "feature_flags:update")  # fmt: skip
    _refused(await client.post(f"/v1/workflows/{workflow}/executions/{execution}/rerun", headers=robot),
             "campaigns:update", "feature_flags:update")  # fmt: skip
    _refused(await client.patch(f"/v1/workflows/{workflow}", json={"enabled": True}, headers=robot),
             "campaigns:update", "feature_flags:update")  # fmt: skip
    _refused(
        await client.patch(f"/v1/workflows/{harmless.json()['id']}", json={"steps": [FLAG_STEP]}, headers=robot),
        "feature_flags:update",
    )
    # and only the admin's run happened: the role reads the workflow, but started nothing
    executions = await client.get(f"/v1/workflows/{workflow}/executions", headers=robot)
    assert executions.status_code == 200 and len(executions.json()["items"]) == 1


async def test_a_role_holding_the_steps_permissions_may_use_them(
    client: httpx.AsyncClient, db: Database, settings: Settings, make_team
) -> None:  # type: ignore[no-untyped-def]
    # given a role with the workflows permissions and feature_flags:update
    team: Team = await make_team()
    flagger = await _user_with_role(
        client, db, settings, team, "flagger", [*WORKFLOWS_ONLY, "feature_flags:update", "feature_flags:read"]
    )
    # when it creates and runs a flag workflow, then the flag changes
    made = await client.post("/v1/workflows", json=_workflow("campaign.created", FLAG_STEP), headers=flagger)
    assert made.status_code == 201, made.text
    ran = await client.post(f"/v1/workflows/{made.json()['id']}/run", json={"payload": {}}, headers=flagger)
    assert ran.status_code == 201, ran.text
    await engine.run_pending(db, settings, team.tenant_id)
    async with db.tenant_transaction(team.tenant_id) as session:
        assert (await flags.effective(session, team.tenant_id))["custom_roles"] is False


def test_what_each_step_needs() -> None:
    assert required_permissions("campaign.created", [{"type": "delay"}, {"type": "condition"}]) == frozenset()
    assert required_permissions("campaign.created", [{"type": "set_campaign_stage"}]) == {"campaigns:update"}
    assert required_permissions("episode.published", [{"type": "webhook"}]) == {"episodes:read"}
    assert required_permissions("booking.pacing_behind", [{"type": "email"}]) == {"bookings:read", "users:read"}
    assert required_permissions("quota.threshold_reached", [{"type": "webhook"}]) == {"tenant:read"}
