"""Workflow definitions (CRUD within the tier's quota, the signing secret) and their executions as the
API sees them: list, show, cancel, re-run and manual runs; the engine runs them."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit import service as audit
from castmetrics.auth.principal import Actor, TenantRef
from castmetrics.db.repository import Repository
from castmetrics.errors import Conflict
from castmetrics.quotas import service as quotas
from castmetrics.workflows import engine
from castmetrics.workflows.api_schemas import WorkflowIn, WorkflowUpdate
from castmetrics.workflows.models import Workflow, WorkflowExecution
from castmetrics.workflows.schemas import Condition, Step

WORKFLOW_FIELDS = ("name", "description", "trigger_event", "conditions", "steps", "enabled")
EXECUTION_FIELDS = ("workflow_id", "status", "trigger_event", "event_id", "rerun_of")
FINISHED = ("succeeded", "failed", "cancelled")
MANUAL_TRIGGER = "manual"

_STEPS = TypeAdapter(list[Step])
_CONDITIONS = TypeAdapter(list[Condition])

_workflows = Repository(Workflow, moment=Workflow.created_at)
_executions = Repository(WorkflowExecution, moment=WorkflowExecution.created_at)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _definition(field: str, value: Any) -> Any:
    """A definition field as the JSONB columns store it: steps and conditions with every default spelled
    out, so a stored workflow says exactly what will run."""
    if field == "steps":
        return _STEPS.dump_python(value, mode="json")
    if field == "conditions":
        return _CONDITIONS.dump_python(value, mode="json")
    return value


# --- workflows -----------------------------------------------------------------------------------


async def create_workflow(
    session: AsyncSession, tenant: TenantRef, actor: Actor, data: WorkflowIn, *, created_by: uuid.UUID | None
) -> Workflow:
    """A workflow with a fresh signing secret, within the tier's ``workflows`` quota (402 when full)."""
    await quotas.ensure_room(session, tenant, "workflows")
    fields = {field: _definition(field, getattr(data, field)) for field in WORKFLOW_FIELDS}
    workflow = Workflow(tenant_id=tenant.id, id=uuid.uuid4(), secret=new_secret(), created_by=created_by, **fields)
    session.add(workflow)
    await session.flush()
    await session.refresh(workflow)
    await audit.record(
        session, tenant_id=tenant.id, actor=actor, action="create", entity_type="workflow", entity_id=workflow.id,
        after=audit.snapshot(workflow, WORKFLOW_FIELDS),
    )  # fmt: skip
    return workflow


async def get_workflow(session: AsyncSession, workflow_id: uuid.UUID, *, for_update: bool = False) -> Workflow:
    """One workflow of the tenant (RLS: another tenant's is missing); ``for_update`` locks its row."""
    return await _workflows.get(session, workflow_id, missing="no such workflow", for_update=for_update)


async def list_workflows(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    enabled: bool | None = None,
    trigger_event: str | None = None,
) -> tuple[Sequence[Workflow], str | None]:
    statement = select(Workflow)
    if enabled is not None:
        statement = statement.where(Workflow.enabled == enabled)
    if trigger_event is not None:
        statement = statement.where(Workflow.trigger_event == trigger_event)
    return await _workflows.page(session, statement, limit=limit, cursor=cursor)


async def update_workflow(session: AsyncSession, actor: Actor, workflow: Workflow, data: WorkflowUpdate) -> Workflow:
    """Change the fields sent. Executions already started keep the steps they started with."""
    before = audit.snapshot(workflow, WORKFLOW_FIELDS)
    for field in data.model_fields_set:
        setattr(workflow, field, _definition(field, getattr(data, field)))
    await session.flush()
    await session.refresh(workflow)
    await audit.record(
        session, tenant_id=workflow.tenant_id, actor=actor, action="update", entity_type="workflow",
        entity_id=workflow.id, before=before, after=audit.snapshot(workflow, WORKFLOW_FIELDS),
    )  # fmt: skip
    return workflow


async def delete_workflow(session: AsyncSession, actor: Actor, workflow: Workflow) -> None:
    """Delete the workflow; its executions go with it (the foreign key cascades), running ones included."""
    await session.delete(workflow)
    await session.flush()
    await audit.record(
        session, tenant_id=workflow.tenant_id, actor=actor, action="delete", entity_type="workflow",
        entity_id=workflow.id, before={"name": workflow.name, "trigger_event": workflow.trigger_event},
    )  # fmt: skip


async def rotate_secret(session: AsyncSession, actor: Actor, workflow: Workflow) -> Workflow:
    """A new signing secret; the old one stops signing at once (executions sign with the current one)."""
    old = workflow.secret
    workflow.secret = new_secret()
    await session.flush()
    await session.refresh(workflow)
    # The audit log masks ``secret``: the entry says it changed, never what it is.
    await audit.record(
        session, tenant_id=workflow.tenant_id, actor=actor, action="rotate_secret", entity_type="workflow",
        entity_id=workflow.id, before={"secret": old}, after={"secret": workflow.secret},
    )  # fmt: skip
    return workflow


# --- executions ----------------------------------------------------------------------------------


async def list_executions(
    session: AsyncSession, workflow_id: uuid.UUID, *, limit: int, cursor: str | None, status: str | None = None
) -> tuple[Sequence[WorkflowExecution], str | None]:
    statement = select(WorkflowExecution).where(WorkflowExecution.workflow_id == workflow_id)
    if status is not None:
        statement = statement.where(WorkflowExecution.status == status)
    return await _executions.page(session, statement, limit=limit, cursor=cursor)


async def get_execution(session: AsyncSession, workflow_id: uuid.UUID, execution_id: uuid.UUID) -> WorkflowExecution:
    """One execution of the workflow (another workflow's, or another tenant's, is missing)."""
    return await _executions.get(
        session,
        execution_id,
        WorkflowExecution.workflow_id == workflow_id,
        missing="no such execution of this workflow",
    )


async def _record_execution(session: AsyncSession, actor: Actor, action: str, execution: WorkflowExecution) -> None:
    await audit.record(
        session, tenant_id=execution.tenant_id, actor=actor, action=action, entity_type="workflow_execution",
        entity_id=execution.id, after=audit.snapshot(execution, EXECUTION_FIELDS),
    )  # fmt: skip


async def cancel_execution(session: AsyncSession, actor: Actor, execution: WorkflowExecution) -> WorkflowExecution:
    """Cancel an execution that has not finished (409 otherwise); a step already running completes,
    nothing after it runs."""
    execution = await engine.cancel(session, execution)
    await _record_execution(session, actor, "cancel", execution)
    return execution


async def rerun_execution(
    session: AsyncSession,
    actor: Actor,
    workflow: Workflow,
    execution: WorkflowExecution,
    *,
    created_by: uuid.UUID | None,
) -> WorkflowExecution:
    """A new execution of the workflow's current steps with the finished one's trigger and payload
    (409 while it is still pending, running or waiting: two runs of one event at once would repeat its
    effects). Like a manual run, it starts even when the workflow is disabled."""
    if execution.status not in FINISHED:
        raise Conflict(
            f"the execution is {execution.status}: re-run it once it has finished, or cancel it first",
            reason="execution_not_finished",
            execution_status=execution.status,
        )
    rerun = await engine.start(
        session, workflow, trigger_event=execution.trigger_event, payload=execution.payload, created_by=created_by,
        rerun_of=execution.id,
    )  # fmt: skip
    await _record_execution(session, actor, "rerun", rerun)
    return rerun


async def run_manually(
    session: AsyncSession,
    actor: Actor,
    workflow: Workflow,
    payload: dict[str, Any],
    *,
    created_by: uuid.UUID | None,
) -> WorkflowExecution:
    """Start the workflow now with a test payload (trigger ``manual``), enabled or not; its conditions
    are not checked (they select events, and this is no event)."""
    execution = await engine.start(
        session, workflow, trigger_event=MANUAL_TRIGGER, payload=payload, created_by=created_by
    )
    await _record_execution(session, actor, "run", execution)
    return execution
