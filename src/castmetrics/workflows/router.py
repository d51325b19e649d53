"""Workflow routes: definitions, their signing secret, executions (list, show, cancel, re-run), manual runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from castmetrics.auth.dependencies import requires
from castmetrics.auth.principal import Principal
from castmetrics.http import problems
from castmetrics.http.pagination import CursorParam, Limit, Page
from castmetrics.workflows import auth, service
from castmetrics.workflows.api_schemas import (
    ExecutionOut,
    RunIn,
    WorkflowCreated,
    WorkflowIn,
    WorkflowOut,
    WorkflowUpdate,
)
from castmetrics.workflows.schemas import STEP_TYPES, ExecutionStatus, TriggerEvent


def step_error_detail(error: dict[str, Any]) -> str | None:
    """``steps[2] (webhook): url: …`` for a validation error inside a step, else None.

    The problem's ``errors`` keep the raw ``loc`` (``["body", "steps", 2, "webhook", "url"]``); this
    is the one-line ``detail`` a person reads first."""
    loc: Sequence[Any] = error.get("loc", ())
    if len(loc) < 3 or tuple(loc[:2]) != ("body", "steps") or not isinstance(loc[2], int):
        return None
    where, rest = f"steps[{loc[2]}]", list(loc[3:])
    if rest and rest[0] in STEP_TYPES:
        where += f" ({rest[0]})"
        rest = rest[1:]
    kinds = ", ".join(STEP_TYPES)
    if error.get("type") == "union_tag_invalid":
        tag = (error.get("ctx") or {}).get("tag")
        message = f"unknown step type {tag!r}; a step's type is one of {kinds}"
    elif error.get("type") == "union_tag_not_found":
        message = f"a step needs a type, one of {kinds}"
    else:
        message = str(error.get("msg", ""))
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest).lstrip(".")
    return f"{where}: {path}: {message}" if path else f"{where}: {message}"


class StepErrorRoute(APIRoute):
    """Answers a validation error inside a step with a 400 problem whose ``detail`` names the step, its
    type and field (issue 10 asks for a 400 pointing at the bad step); any other validation error goes
    to the app's usual 422 handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                found = exc.errors()
                detail = step_error_detail(dict(found[0])) if found else None
                if detail is None:
                    raise
                return problems.problem(
                    400, detail=detail, type_=problems.PROBLEM_TYPE_BASE + "validation", title="Validation failed",
                    errors=[{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
                            for e in found],
                )  # fmt: skip

        return route


router = APIRouter(prefix="/v1/workflows", tags=["workflows"], route_class=StepErrorRoute)


# --- workflows -----------------------------------------------------------------------------------


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WorkflowCreated, summary="Create a workflow")
async def create_workflow(
    body: WorkflowIn, principal: Annotated[Principal, requires("workflows", "create")]
) -> WorkflowCreated:
    """A workflow: when `trigger_event` happens and every condition holds on its payload, the steps run
    in order (see the step schema in docs/api.md). A bad step is a 400 problem whose `detail` names it
    (`steps[1] (webhook): url: …`) and whose `errors[].loc` points at it. Besides `workflows:create`,
    the steps' own permissions are needed (`set_campaign_stage`: `campaigns:update`,
    `update_feature_flag`: `feature_flags:update`, `email`: `users:read` and a verified email address;
    `webhook` and `email` also read access to what the trigger event describes): 403 naming the missing
    `permissions` otherwise. Counts against the tier's `workflows` quota (402 naming the quota when
    full). The answer carries the webhook signing `secret`, shown only here and on rotation."""
    auth.ensure_may_use(principal, body.trigger_event, body.steps)
    workflow = await service.create_workflow(
        principal.session, principal.tenant, principal.actor, body, created_by=principal.user.id
    )
    return WorkflowCreated.model_validate(workflow)


@router.get("", response_model=Page[WorkflowOut], summary="List workflows")
async def list_workflows(
    principal: Annotated[Principal, requires("workflows", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
    enabled: Annotated[bool | None, Query(description="Only enabled (true) or disabled (false) ones.")] = None,
    trigger_event: Annotated[TriggerEvent | None, Query(description="Only workflows this event triggers.")] = None,
) -> Page[WorkflowOut]:
    """The tenant's workflows, newest first (without their secrets)."""
    workflows, next_cursor = await service.list_workflows(
        principal.session, limit=limit, cursor=cursor, enabled=enabled, trigger_event=trigger_event
    )
    return Page(items=[WorkflowOut.model_validate(w) for w in workflows], next_cursor=next_cursor)


@router.get("/{workflow_id}", response_model=WorkflowOut, summary="Get a workflow")
async def get_workflow(
    workflow_id: uuid.UUID, principal: Annotated[Principal, requires("workflows", "read")]
) -> WorkflowOut:
    """One workflow (without its secret)."""
    return WorkflowOut.model_validate(await service.get_workflow(principal.session, workflow_id))


@router.patch("/{workflow_id}", response_model=WorkflowOut, summary="Update a workflow")
async def update_workflow(
    workflow_id: uuid.UUID, body: WorkflowUpdate, principal: Annotated[Principal, requires("workflows", "update")]
) -> WorkflowOut:
    """Change any of the fields sent (validated as on creation; `description` may be null). Executions
    already started keep the steps they started with. The workflow as changed must be one the caller
    could create: 403 naming the missing `permissions` otherwise."""
    workflow = await service.get_workflow(principal.session, workflow_id, for_update=True)
    sent = body.model_fields_set
    auth.ensure_may_use(
        principal,
        body.trigger_event if "trigger_event" in sent and body.trigger_event else workflow.trigger_event,
        body.steps if "steps" in sent and body.steps is not None else workflow.steps,
    )
    return WorkflowOut.model_validate(await service.update_workflow(principal.session, principal.actor, workflow, body))


@router.delete("/{workflow_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a workflow")
async def delete_workflow(
    workflow_id: uuid.UUID, principal: Annotated[Principal, requires("workflows", "delete")]
) -> Response:
    """Delete the workflow with all its executions."""
    workflow = await service.get_workflow(principal.session, workflow_id, for_update=True)
    await service.delete_workflow(principal.session, principal.actor, workflow)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{workflow_id}/rotate-secret", response_model=WorkflowCreated, summary="Rotate the signing secret")
async def rotate_secret(
    workflow_id: uuid.UUID, principal: Annotated[Principal, requires("workflows", "update")]
) -> WorkflowCreated:
    """Replace the secret that signs the workflow's webhook requests; the answer shows the new one
    (the only time it is shown). Requests sent from now on are signed with it."""
    workflow = await service.get_workflow(principal.session, workflow_id, for_update=True)
    return WorkflowCreated.model_validate(await service.rotate_secret(principal.session, principal.actor, workflow))


# --- executions ----------------------------------------------------------------------------------


@router.get("/{workflow_id}/executions", response_model=Page[ExecutionOut], summary="List a workflow's executions")
async def list_executions(
    workflow_id: uuid.UUID,
    principal: Annotated[Principal, requires("workflows", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
    execution_status: Annotated[
        ExecutionStatus | None, Query(alias="status", description="Only executions in this status.")
    ] = None,
) -> Page[ExecutionOut]:
    """The workflow's executions, newest first, each with its per-step results."""
    await service.get_workflow(principal.session, workflow_id)
    executions, next_cursor = await service.list_executions(
        principal.session, workflow_id, limit=limit, cursor=cursor, status=execution_status
    )
    return Page(items=[ExecutionOut.model_validate(e) for e in executions], next_cursor=next_cursor)


@router.get("/{workflow_id}/executions/{execution_id}", response_model=ExecutionOut, summary="Get an execution")
async def get_execution(
    workflow_id: uuid.UUID, execution_id: uuid.UUID, principal: Annotated[Principal, requires("workflows", "read")]
) -> ExecutionOut:
    """One execution: status, triggering event and payload, each step's result, attempts and timings."""
    return ExecutionOut.model_validate(await service.get_execution(principal.session, workflow_id, execution_id))


@router.post(
    "/{workflow_id}/executions/{execution_id}/cancel", response_model=ExecutionOut, summary="Cancel an execution"
)
async def cancel_execution(
    workflow_id: uuid.UUID, execution_id: uuid.UUID, principal: Annotated[Principal, requires("workflows", "update")]
) -> ExecutionOut:
    """Cancel a pending, running or waiting execution: no further step runs. One that has already
    finished (succeeded, failed or cancelled) answers 409."""
    execution = await service.get_execution(principal.session, workflow_id, execution_id)
    return ExecutionOut.model_validate(await service.cancel_execution(principal.session, principal.actor, execution))


@router.post(
    "/{workflow_id}/executions/{execution_id}/rerun",
    status_code=status.HTTP_201_CREATED,
    response_model=ExecutionOut,
    summary="Re-run an execution",
)
async def rerun_execution(
    workflow_id: uuid.UUID, execution_id: uuid.UUID, principal: Annotated[Principal, requires("workflows", "update")]
) -> ExecutionOut:
    """A new execution of the workflow's current steps with the same trigger and payload, `rerun_of`
    naming the original; it starts even when the workflow is disabled. An execution still pending,
    running or waiting answers 409; a caller without the permissions the steps need, 403 naming them."""
    workflow = await service.get_workflow(principal.session, workflow_id)
    auth.ensure_may_use(principal, workflow.trigger_event, workflow.steps)
    execution = await service.get_execution(principal.session, workflow_id, execution_id)
    rerun = await service.rerun_execution(
        principal.session, principal.actor, workflow, execution, created_by=principal.user.id
    )
    return ExecutionOut.model_validate(rerun)


@router.post(
    "/{workflow_id}/run", status_code=status.HTTP_201_CREATED, response_model=ExecutionOut, summary="Run a workflow now"
)
async def run_workflow(
    workflow_id: uuid.UUID, body: RunIn, principal: Annotated[Principal, requires("workflows", "update")]
) -> ExecutionOut:
    """Start an execution now with a test `payload` (at most 64 KB as JSON, nested at most 32 levels
    deep: 422 otherwise), trigger `manual`, even when the workflow is disabled. It answers at once,
    `pending`; follow it on the executions routes. A caller without the permissions the steps need
    gets 403 naming them."""
    workflow = await service.get_workflow(principal.session, workflow_id)
    auth.ensure_may_use(principal, workflow.trigger_event, workflow.steps)
    execution = await service.run_manually(
        principal.session, principal.actor, workflow, body.payload, created_by=principal.user.id
    )
    return ExecutionOut.model_validate(execution)
