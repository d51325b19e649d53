"""Workflow test data made through the API: a flag-flipping workflow that needs no network, and its runs."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories.identity import Team

# Needs no network: stops unless the payload's ``go`` is true, then turns a feature flag off.
FLAG_STEPS: list[dict[str, Any]] = [
    {"type": "condition", "field": "go", "operator": "eq", "value": True},
    {"type": "update_feature_flag", "flag": "custom_roles", "enabled": False},
]


def workflow_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Flag flipper", "trigger_event": "campaign.stage_changed", "steps": FLAG_STEPS}
    return {**body, **fields}


async def create_workflow(client: httpx.AsyncClient, team: Team, **fields: Any) -> dict[str, Any]:
    """The flag flipper (``fields`` override its body), created by the team's admin."""
    created = await client.post("/v1/workflows", json=workflow_body(**fields), headers=team.auth("admin"))
    assert created.status_code == 201, created.text
    workflow: dict[str, Any] = created.json()
    return workflow


async def run(client: httpx.AsyncClient, team: Team, workflow_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Start the workflow by hand with ``payload``; answers the execution."""
    started = await client.post(
        f"/v1/workflows/{workflow_id}/run", json={"payload": payload}, headers=team.auth("admin")
    )
    assert started.status_code == 201, started.text
    execution: dict[str, Any] = started.json()
    return execution
