"""Workflows: the list, one workflow's definition and its executions, and the controls the API allows.

Every change is a CSRF-checked form posting to a dashboard route that calls the same API route a
client would (``workflows:update`` for all of them), so the API decides who may: its 403 becomes the
403 page, a 409 or 422 shows the workflow again with the reason, success redirects with a notice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from castmetrics.web.api import ApiError
from castmetrics.web.pages.common import gather_api, page_url, uuid_or_404
from castmetrics.web.session import SignedIn, Viewer, checked_form, field_of, page_error
from castmetrics.web.templating import redirect, render

router = APIRouter()

PAGE_SIZE = 25
WORKFLOWS_PAGE_SIZE = 50
STATUSES = ("pending", "running", "waiting", "succeeded", "failed", "cancelled")
OPEN_STATUSES = frozenset({"pending", "running", "waiting"})
# Answers of the API shown on the page again (with that status) instead of an error page.
SHOWN_AGAIN = frozenset({400, 402, 409, 422})
# Notices after a change: only these fixed texts, chosen by a key in the redirect's query.
NOTICES = {
    "enabled": "The workflow is enabled: its trigger starts it again.",
    "disabled": "The workflow is disabled: its trigger no longer starts it.",
    "started": "A run was started. It is pending until a worker picks it up.",
    "cancelled": "The execution was cancelled: no further step runs.",
    "rerun": "A re-run was started with the same trigger and payload.",
}
LAST_EXECUTION_LOOKUPS = 4  # API calls in flight at once for the list's "last execution" column
MAX_SHOWN_JSON = 2_000


# --- helpers (also used by the settings pages) ----------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def shown_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= MAX_SHOWN_JSON else f"{text[:MAX_SHOWN_JSON]}…"


# --- how a definition is shown ---------------------------------------------------------------------


def _webhook_target(url: str) -> str:
    """Where a webhook goes, without what might be a credential (user info, query, fragment)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    hidden = " (query hidden)" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{hidden}"


def _duration(seconds: int) -> str:
    for size, unit in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _condition(field: Any, operator: Any, value: Any) -> str:
    if operator in ("exists", "not_exists"):
        return f"{field} {str(operator).replace('_', ' ')}"
    return f"{field} {operator} {shown_json(value)}"


def describe_step(step: dict[str, Any]) -> list[tuple[str, str]]:
    """A step's key settings as (label, text) pairs; the workflow's signing secret is never in them."""
    kind = step.get("type")
    settings: list[tuple[str, str]] = []
    if kind == "webhook":
        settings += [
            ("POST to", _webhook_target(str(step.get("url", "")))),
            ("Timeout", f"{step.get('timeout_seconds')} s"),
        ]
    elif kind == "email":
        to = step.get("to") or {}
        for key, label in (("roles", "Roles"), ("addresses", "Addresses"), ("users", "Users")):
            if to.get(key):
                settings.append((label, ", ".join(str(item) for item in to[key])))
        settings.append(("Subject", str(step.get("subject", ""))))
    elif kind == "set_campaign_stage":
        settings.append(("Stage", str(step.get("stage"))))
        settings.append(("Campaign", str(step.get("campaign_id") or "the payload's campaign_id")))
    elif kind == "delay":
        settings.append(("Wait", _duration(int(step.get("seconds") or 0))))
    elif kind == "condition":
        settings.append(("Go on only if", _condition(step.get("field"), step.get("operator"), step.get("value"))))
    elif kind == "update_feature_flag":
        settings.append(("Flag", f"{step.get('flag')} → {'on' if step.get('enabled') else 'off'}"))
    settings.append(("Attempts", str(step.get("max_attempts", ""))))
    return settings


# --- the list --------------------------------------------------------------------------------------


async def _last_execution(viewer: Viewer, workflow_id: str, gate: asyncio.Semaphore) -> dict[str, Any] | None:
    async with gate:
        answer = await viewer.api.get(f"/v1/workflows/{workflow_id}/executions", limit=1)
    items: list[dict[str, Any]] = answer["items"]
    return items[0] if items else None


@router.get("/workflows")
async def workflows_page(request: Request, viewer: SignedIn, cursor: str | None = None) -> Response:
    [listing] = await gather_api(viewer.api.get("/v1/workflows", limit=WORKFLOWS_PAGE_SIZE, cursor=cursor))
    workflows: list[dict[str, Any]] = listing["items"]
    gate = asyncio.Semaphore(LAST_EXECUTION_LOOKUPS)
    last = await gather_api(*(_last_execution(viewer, w["id"], gate) for w in workflows))
    context = {
        "title": "Workflows",
        "rows": list(zip(workflows, last, strict=True)),
        "older_url": page_url("/workflows", cursor=listing.get("next_cursor")),
        "has_older": bool(listing.get("next_cursor")),
        "paged": bool(cursor),
    }
    return render(request, "workflows.html", context, viewer=viewer)


# --- one workflow ----------------------------------------------------------------------------------


async def _workflow_page(
    request: Request,
    viewer: Viewer,
    workflow_id: str,
    *,
    status: str | None = None,
    cursor: str | None = None,
    notice: str | None = None,
    error: str | None = None,
    code: int = 200,
) -> Response:
    chosen = status if status in STATUSES else None
    base = f"/v1/workflows/{workflow_id}"
    workflow, listing = await gather_api(
        viewer.api.get(base),
        viewer.api.get(f"{base}/executions", limit=PAGE_SIZE, cursor=cursor, status=chosen),
    )
    executions: list[dict[str, Any]] = listing["items"]
    steps = [{"type": step.get("type"), "settings": describe_step(step)} for step in workflow["steps"]]
    here = f"/workflows/{workflow_id}"
    context = {
        "title": workflow["name"],
        "workflow": workflow,
        "steps": steps,
        "conditions": [_condition(c.get("field"), c.get("operator"), c.get("value")) for c in workflow["conditions"]],
        "executions": executions,
        "payloads": {e["id"]: shown_json(e["payload"]) for e in executions},
        "step_results": {e["id"]: [(r, shown_json(r["result"]) if r.get("result") else "") for r in e["results"]]
                         for e in executions},
        "statuses": STATUSES,
        "open_statuses": OPEN_STATUSES,
        "status": chosen,
        "paged": bool(cursor),
        "newest_url": page_url(here, status=chosen),
        "older_url": page_url(here, status=chosen, cursor=listing.get("next_cursor")),
        "has_older": bool(listing.get("next_cursor")),
        "can_update": viewer.can("workflows:update"),
        "notice": NOTICES.get(notice or ""),
        "error": error,
    }  # fmt: skip
    return render(request, "workflow.html", context, viewer=viewer, status=code)


@router.get("/workflows/{workflow_id}")
async def workflow_page(
    request: Request,
    workflow_id: str,
    viewer: SignedIn,
    status: str | None = None,
    cursor: str | None = None,
    notice: str | None = None,
) -> Response:
    wid = uuid_or_404(workflow_id, "workflow")
    return await _workflow_page(request, viewer, wid, status=status, cursor=cursor, notice=notice)


async def _change(request: Request, viewer: Viewer, workflow_id: str, call: Awaitable[Any], notice: str) -> Response:
    """Run one API change; success redirects to the workflow with its notice."""
    try:
        await call
    except ApiError as exc:
        if exc.status in SHOWN_AGAIN:
            return await _workflow_page(request, viewer, workflow_id, error=exc.detail, code=exc.status)
        raise page_error(exc) from None
    return redirect(request, page_url(f"/workflows/{workflow_id}", notice=notice))


@router.post("/workflows/{workflow_id}/toggle")
async def toggle_workflow(request: Request, workflow_id: str, viewer: SignedIn) -> Response:
    form = await checked_form(request)
    wid = uuid_or_404(workflow_id, "workflow")
    # The form names the state it asks for, so a second click (or a stale page) does not flip it back.
    enabled = field_of(form, "enabled") == "true"
    call = viewer.api.patch(f"/v1/workflows/{wid}", {"enabled": enabled})
    return await _change(request, viewer, wid, call, "enabled" if enabled else "disabled")


@router.post("/workflows/{workflow_id}/run")
async def run_workflow(request: Request, workflow_id: str, viewer: SignedIn) -> Response:
    form = await checked_form(request)
    wid = uuid_or_404(workflow_id, "workflow")
    raw = field_of(form, "payload") or "{}"
    try:
        payload = json.loads(raw, parse_constant=_no_constant)
        json.dumps(payload, allow_nan=False, ensure_ascii=False).encode()  # what httpx will send must encode
    except (ValueError, RecursionError, UnicodeError):
        payload = None
    if not isinstance(payload, dict):
        detail = 'The test payload must be a JSON object, such as {} or {"go": true}.'
        return await _workflow_page(request, viewer, wid, error=detail, code=422)
    return await _change(
        request, viewer, wid, viewer.api.post(f"/v1/workflows/{wid}/run", {"payload": payload}), "started"
    )


async def _change_execution(
    request: Request, viewer: Viewer, workflow_id: str, execution_id: str, action: str, notice: str
) -> Response:
    await checked_form(request)
    wid = uuid_or_404(workflow_id, "workflow")
    eid = uuid_or_404(execution_id, "execution")
    call = viewer.api.post(f"/v1/workflows/{wid}/executions/{eid}/{action}")
    return await _change(request, viewer, wid, call, notice)


@router.post("/workflows/{workflow_id}/executions/{execution_id}/cancel")
async def cancel_execution(request: Request, workflow_id: str, execution_id: str, viewer: SignedIn) -> Response:
    return await _change_execution(request, viewer, workflow_id, execution_id, "cancel", "cancelled")


@router.post("/workflows/{workflow_id}/executions/{execution_id}/rerun")
async def rerun_execution(request: Request, workflow_id: str, execution_id: str, viewer: SignedIn) -> Response:
    return await _change_execution(request, viewer, workflow_id, execution_id, "rerun", "rerun")
