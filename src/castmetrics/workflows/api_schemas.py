"""Request and response shapes of the workflows API: definitions, their secret, executions, manual runs."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from castmetrics.events.validation import MAX_DATA_DEPTH, nesting_exceeds
from castmetrics.workflows.schemas import MAX_STEPS, Condition, ExecutionStatus, Step, StepResult, TriggerEvent

MAX_CONDITIONS = 20
# A manual run's payload, serialized as compact UTF-8 JSON (as it is stored), at most this many bytes.
MAX_PAYLOAD_BYTES = 64 * 1024

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=10_000)]
Conditions = Annotated[
    list[Condition],
    Field(
        max_length=MAX_CONDITIONS,
        description="All must hold on the event payload for the workflow to start (none: every event).",
    ),
]
Steps = Annotated[
    list[Step],
    Field(min_length=1, max_length=MAX_STEPS, description=f"Run in order; 1 to {MAX_STEPS} steps."),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowIn(Strict):
    name: Name
    description: Description | None = None
    trigger_event: TriggerEvent = Field(description="The domain event that starts the workflow.")
    conditions: Conditions = Field(default_factory=list)
    steps: Steps
    enabled: bool = True


class WorkflowUpdate(Strict):
    """A partial change: only the fields sent change; ``description`` may be cleared with null."""

    name: Name | None = None
    description: Description | None = None
    trigger_event: TriggerEvent | None = None
    conditions: Conditions | None = None
    steps: Steps | None = None
    enabled: bool | None = None

    @field_validator("name", "trigger_event", "conditions", "steps", "enabled")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for fields the client sent: an explicit null is refused, an omitted field stays as it is.
        if value is None:
            raise ValueError("cannot be null")
        return value


class WorkflowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    trigger_event: TriggerEvent
    conditions: list[Condition]
    steps: list[Step]
    enabled: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class WorkflowCreated(WorkflowOut):
    secret: str = Field(
        description="Signs the workflow's webhook requests (`X-Castmetrics-Signature`). Shown only on creation "
        "and on `POST /v1/workflows/{id}/rotate-secret`."
    )


class ExecutionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workflow_id: uuid.UUID
    status: ExecutionStatus
    trigger_event: str = Field(description="The triggering event's type, or `manual` for a run through the API.")
    event_id: uuid.UUID | None = Field(description="The outbox event that started it (null for manual runs).")
    payload: dict[str, Any]
    step_index: int = Field(description="The index of the step to run next (the number of steps done).")
    attempts: int = Field(description="Failed attempts of the current step so far.")
    results: list[StepResult]
    error: str | None
    next_run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rerun_of: uuid.UUID | None = Field(description="The execution this one re-runs.")


class RunIn(Strict):
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description=f"The test event payload the steps and conditions see (at most {MAX_PAYLOAD_BYTES} bytes as "
        f"JSON, nested at most {MAX_DATA_DEPTH} levels deep, as event data).",
    )

    @field_validator("payload")
    @classmethod
    def _small_enough(cls, payload: dict[str, Any]) -> dict[str, Any]:
        # Depth first: a payload nested past what the JSON encoders handle would fail every later step.
        if nesting_exceeds(payload):
            raise ValueError(f"the payload is nested more than {MAX_DATA_DEPTH} levels deep, as events allow")
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"the payload is {size} bytes as JSON; at most {MAX_PAYLOAD_BYTES} are allowed")
        return payload
