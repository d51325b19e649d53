"""The workflow pages: the list, a workflow's definition and executions (as the API lists them), and the
controls, which only the API's workflows:update holders see and whose refusals come from the API."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.web.templating import moment
from castmetrics.workflows import engine
from tests.factories.identity import Team
from tests.factories.web import csrf_of
from tests.factories.workflows import FLAG_STEPS, create_workflow, run

EXECUTION_ROW = re.compile(r'<tr data-testid="execution" data-id="([0-9a-f-]{36})" data-status="(\w+)">')
SECRET_QUERY = "token=hush-7f3a9c"


async def api_executions(client: httpx.AsyncClient, team: Team, workflow_id: str, **params: Any) -> dict[str, Any]:
    listed = await client.get(f"/v1/workflows/{workflow_id}/executions", params=params, headers=team.auth("viewer"))
    assert listed.status_code == 200, listed.text
    answer: dict[str, Any] = listed.json()
    return answer


async def api_workflow(client: httpx.AsyncClient, team: Team, workflow_id: str) -> dict[str, Any]:
    shown = await client.get(f"/v1/workflows/{workflow_id}", headers=team.auth("viewer"))
    assert shown.status_code == 200, shown.text
    workflow: dict[str, Any] = shown.json()
    return workflow


def rows_of(html: str) -> list[tuple[str, str]]:
    return EXECUTION_ROW.findall(html)


async def test_the_list_and_a_workflow_show_what_the_api_answers(
    client: httpx.AsyncClient, make_team, pages, db: Database, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    flipper = await create_workflow(client, team, conditions=[{"field": "to", "operator": "eq", "value": "active"}])
    steps = [
        {"type": "webhook", "url": f"https://crm.example.com/hooks?{SECRET_QUERY}"},
        {"type": "delay", "seconds": 7200},
    ]
    hook = await create_workflow(
        client, team, name="Tell the CRM", trigger_event="campaign.created", enabled=False, steps=steps
    )
    stopped = await run(client, team, flipper["id"], {"go": False})
    await engine.run_pending(db, settings, team.tenant_id)
    pending = await run(client, team, flipper["id"], {"go": False})
    http = await pages(team, "viewer", tz="Asia/Tokyo")

    listing = await http.get("/workflows")
    assert listing.status_code == 200
    assert f'href="/workflows/{flipper["id"]}"' in listing.text and f'href="/workflows/{hook["id"]}"' in listing.text
    assert "Tell the CRM" in listing.text and "campaign.created" in listing.text
    flipper_row = listing.text.split(f'data-id="{flipper["id"]}"')[1].split("</tr>")[0]
    assert 'data-status="pending"' in flipper_row  # the newest execution
    hook_row = listing.text.split(f'data-id="{hook["id"]}"')[1].split("</tr>")[0]
    assert "disabled" in hook_row and "never run" in hook_row

    page = await http.get(f"/workflows/{flipper['id']}")
    assert page.status_code == 200
    api = await api_executions(client, team, flipper["id"])
    assert rows_of(page.text) == [(e["id"], e["status"]) for e in api["items"]]
    assert rows_of(page.text) == [(pending["id"], "pending"), (stopped["id"], "succeeded")]
    assert 'data-testid="trigger">campaign.stage_changed<' in page.text
    assert "to eq &#34;active&#34;" in page.text and "custom_roles → off" in page.text
    # the viewer's zone: started and finished shown in Tokyo time
    done = next(e for e in api["items"] if e["id"] == stopped["id"])
    tokyo = ZoneInfo("Asia/Tokyo")
    assert moment(done["finished_at"], tokyo) in page.text and moment(done["started_at"], tokyo) in page.text
    # per-step results in a <details>
    assert '<details class="results">' in page.text and 'data-testid="step-result" data-status="stopped"' in page.text

    hook_page = await http.get(f"/workflows/{hook['id']}")
    assert hook_page.status_code == 200
    assert "https://crm.example.com/hooks (query hidden)" in hook_page.text and "2 hours" in hook_page.text
    assert "hush-7f3a9c" not in hook_page.text
    created = await client.post(
        "/v1/workflows", json={"name": "S", "trigger_event": "campaign.created", "steps": FLAG_STEPS},
        headers=team.auth("owner"),
    )  # fmt: skip
    secret = created.json()["secret"]
    assert secret not in (await http.get(f"/workflows/{created.json()['id']}")).text


async def test_executions_filter_by_status_and_page_with_the_apis_cursor(
    client: httpx.AsyncClient, make_team, pages
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    started = [await run(client, team, workflow["id"], {"n": n}) for n in range(28)]
    for execution in started[:3]:
        cancelled = await client.post(
            f"/v1/workflows/{workflow['id']}/executions/{execution['id']}/cancel", headers=team.auth("admin")
        )
        assert cancelled.status_code == 200
    http = await pages(team, "analyst")
    path = f"/workflows/{workflow['id']}"

    first = await http.get(path)
    api_first = await api_executions(client, team, workflow["id"], limit=25)
    assert len(rows_of(first.text)) == 25
    assert rows_of(first.text) == [(e["id"], e["status"]) for e in api_first["items"]]
    older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', first.text)
    assert older and api_first["next_cursor"]
    second = await http.get(older.group(1).replace("&amp;", "&"))
    api_second = await api_executions(client, team, workflow["id"], limit=25, cursor=api_first["next_cursor"])
    assert rows_of(second.text) == [(e["id"], e["status"]) for e in api_second["items"]]
    assert len(rows_of(second.text)) == 3 and 'rel="next"' not in second.text
    assert {e for e, _ in rows_of(first.text) + rows_of(second.text)} == {e["id"] for e in started}

    only_cancelled = await http.get(path, params={"status": "cancelled"})
    api_cancelled = await api_executions(client, team, workflow["id"], status="cancelled")
    assert rows_of(only_cancelled.text) == [(e["id"], "cancelled") for e in api_cancelled["items"]]
    assert {e for e, _ in rows_of(only_cancelled.text)} == {e["id"] for e in started[:3]}
    assert '<option value="cancelled" selected>' in only_cancelled.text
    # an unknown status is no filter at all
    assert len(rows_of((await http.get(path, params={"status": "exploded"})).text)) == 25


async def test_a_viewer_sees_no_controls_and_its_crafted_posts_are_refused(
    client: httpx.AsyncClient, make_team, pages, db: Database, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    finished = await run(client, team, workflow["id"], {"go": False})
    await engine.run_pending(db, settings, team.tenant_id)
    open_ = await run(client, team, workflow["id"], {})
    http = await pages(team, "viewer")
    page = await http.get(f"/workflows/{workflow['id']}")
    assert page.status_code == 200
    for action in ("/toggle", "/run", "/cancel", "/rerun"):
        assert f'{action}"' not in page.text, action
    csrf = csrf_of(page.text)
    before = await api_executions(client, team, workflow["id"])

    base = f"/workflows/{workflow['id']}"
    for url, form in (
        (f"{base}/toggle", {"enabled": "false"}),
        (f"{base}/run", {"payload": "{}"}),
        (f"{base}/executions/{open_['id']}/cancel", {}),
        (f"{base}/executions/{finished['id']}/rerun", {}),
    ):
        refused = await http.post(url, data={"csrf_token": csrf, **form})
        assert refused.status_code == 403, url
        assert "Not allowed" in refused.text and "workflows:update" in refused.text

    assert (await api_workflow(client, team, workflow["id"]))["enabled"] is True
    assert await api_executions(client, team, workflow["id"]) == before
    # and a role without workflows:read gets the API's 403 as a page
    sales = await pages(team, "sales")
    assert (await sales.get("/workflows")).status_code == 403
    assert (await sales.get(base)).status_code == 403


async def test_an_admin_toggles_runs_cancels_and_reruns(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    http = await pages(team, "admin")
    base = f"/workflows/{workflow['id']}"
    page = await http.get(base)
    assert f'action="{base}/toggle"' in page.text and f'action="{base}/run"' in page.text
    csrf = csrf_of(page.text)

    disabled = await http.post(f"{base}/toggle", data={"csrf_token": csrf, "enabled": "false"})
    assert disabled.status_code == 303 and disabled.headers["location"] == f"{base}?notice=disabled"
    assert (await api_workflow(client, team, workflow["id"]))["enabled"] is False
    shown = await http.get(disabled.headers["location"])
    assert "The workflow is disabled" in shown.text and 'data-testid="enabled">disabled<' in shown.text

    started = await http.post(f"{base}/run", data={"csrf_token": csrf, "payload": '{"go": true}'})
    assert started.status_code == 303 and started.headers["location"] == f"{base}?notice=started"
    [execution] = (await api_executions(client, team, workflow["id"]))["items"]
    assert execution["trigger_event"] == "manual" and execution["payload"] == {"go": True}
    assert execution["status"] == "pending"
    page = await http.get(base)
    assert f'action="{base}/executions/{execution["id"]}/cancel"' in page.text

    bad = await http.post(f"{base}/run", data={"csrf_token": csrf, "payload": "[1, 2"})
    assert bad.status_code == 422 and 'class="alert error"' in bad.text and "JSON object" in bad.text

    cancelled = await http.post(f"{base}/executions/{execution['id']}/cancel", data={"csrf_token": csrf})
    assert cancelled.status_code == 303 and cancelled.headers["location"] == f"{base}?notice=cancelled"
    [after] = (await api_executions(client, team, workflow["id"]))["items"]
    assert after["status"] == "cancelled"

    # cancelling a finished execution: the API's 409, shown on the page with that status
    again = await http.post(f"{base}/executions/{execution['id']}/cancel", data={"csrf_token": csrf})
    assert again.status_code == 409
    assert 'class="alert error"' in again.text and 'data-testid="executions"' in again.text

    rerun = await http.post(f"{base}/executions/{execution['id']}/rerun", data={"csrf_token": csrf})
    assert rerun.status_code == 303 and rerun.headers["location"] == f"{base}?notice=rerun"
    newest, original = (await api_executions(client, team, workflow["id"]))["items"]
    assert newest["rerun_of"] == execution["id"] == original["id"]
    # re-running one still pending: 409 on the page
    refused = await http.post(f"{base}/executions/{newest['id']}/rerun", data={"csrf_token": csrf})
    assert refused.status_code == 409 and 'class="alert error"' in refused.text

    enabled = await http.post(f"{base}/toggle", data={"csrf_token": csrf, "enabled": "true"})
    assert enabled.status_code == 303 and (await api_workflow(client, team, workflow["id"]))["enabled"] is True


async def test_posts_without_csrf_are_refused_and_change_nothing(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    http = await pages(team, "owner")
    base = f"/workflows/{workflow['id']}"
    for form in ({"enabled": "false"}, {"enabled": "false", "csrf_token": "0" * 64}):
        refused = await http.post(f"{base}/toggle", data=form)
        assert refused.status_code == 403 and "Form expired" in refused.text
    assert (await http.post(f"{base}/run", data={})).status_code == 403
    assert (await api_workflow(client, team, workflow["id"]))["enabled"] is True
    assert (await api_executions(client, team, workflow["id"]))["items"] == []


async def test_bad_unknown_and_foreign_ids_are_404(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    other: Team = await make_team()
    mine = await create_workflow(client, team)
    theirs = await create_workflow(client, other)
    their_run = await run(client, other, theirs["id"], {})
    my_run = await run(client, team, mine["id"], {})
    http = await pages(team, "owner")
    csrf = csrf_of((await http.get("/workflows")).text)

    for path in (
        "/workflows/not-a-uuid",
        "/workflows/00000000-0000-4000-8000-000000000000",
        f"/workflows/{theirs['id']}",
    ):
        missing = await http.get(path)
        assert missing.status_code == 404, path
        assert 'data-status="404"' in missing.text
    for url in (
        f"/workflows/{theirs['id']}/toggle",
        f"/workflows/{theirs['id']}/run",
        f"/workflows/{theirs['id']}/executions/{their_run['id']}/cancel",
        f"/workflows/{mine['id']}/executions/{their_run['id']}/cancel",
        f"/workflows/{theirs['id']}/executions/{my_run['id']}/rerun",
        f"/workflows/{mine['id']}/executions/nope/cancel",
        "/workflows/nope/run",
    ):
        refused = await http.post(url, data={"csrf_token": csrf, "enabled": "false"})
        assert refused.status_code == 404, url
    assert (await api_workflow(client, other, theirs["id"]))["enabled"] is True
    assert [e["status"] for e in (await api_executions(client, other, theirs["id"]))["items"]] == ["pending"]


async def test_a_test_payload_that_is_not_plain_json_is_refused_on_the_page(
    client: httpx.AsyncClient, make_team, pages
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(client, team)
    http = await pages(team, "admin")
    base = f"/workflows/{workflow['id']}"
    csrf = csrf_of((await http.get(base)).text)
    for payload in ('{"a": NaN}', '"\\ud800"', "[" * 5000, '{"x": "\\ud800"}', "[1, 2]", "not json"):
        answer = await http.post(f"{base}/run", data={"csrf_token": csrf, "payload": payload})
        assert answer.status_code == 422, (payload, answer.status_code)
        assert "must be a JSON object" in answer.text
    assert (await api_executions(client, team, workflow["id"]))["items"] == []
