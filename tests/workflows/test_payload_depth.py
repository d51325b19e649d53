"""A manual run's payload nested deeper than events allow is a 422 problem, not a 500 (issue 26 item 10)."""

from __future__ import annotations

import httpx

from castmetrics.events.validation import MAX_DATA_DEPTH
from tests.factories.identity import Team
from tests.factories.workflows import create_workflow


def nested_payload(levels: int) -> bytes:
    """``{"payload": …}`` whose payload nests ``levels`` deep, as JSON text (encoders stop at a few hundred)."""
    return b'{"payload":' + b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1) + b"}"


async def test_a_payload_nested_deeper_than_events_allow_is_refused_with_422(
    client: httpx.AsyncClient, make_team
) -> None:  # type: ignore[no-untyped-def]
    # given a workflow
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    headers = {**team.auth("admin"), "Content-Type": "application/json"}
    run = f"/v1/workflows/{workflow['id']}/run"
    # when it is run with payloads nested past the events' limit (300 levels answered 500 before)
    for levels in (MAX_DATA_DEPTH + 1, 300, 900):
        refused = await client.post(run, content=nested_payload(levels), headers=headers)
        # then each is a 422 problem saying why, and nothing started
        assert refused.status_code == 422, (levels, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert f"nested more than {MAX_DATA_DEPTH} levels deep" in refused.text
    # while a payload at the limit runs
    accepted = await client.post(run, content=nested_payload(MAX_DATA_DEPTH), headers=headers)
    assert accepted.status_code == 201, accepted.text
    listed = await client.get(f"/v1/workflows/{workflow['id']}/executions", headers=team.auth("viewer"))
    assert len(listed.json()["items"]) == 1
