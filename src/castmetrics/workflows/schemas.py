"""Workflow definitions (the documented step schema) and the API's shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

# The domain events a workflow can be triggered by (the outbox's event types).
TRIGGER_EVENTS = (
    "episode.published", "campaign.created", "campaign.stage_changed", "booking.pacing_behind",
    "conversion.recorded", "quota.threshold_reached",
)  # fmt: skip
TriggerEvent = Literal[
    "episode.published", "campaign.created", "campaign.stage_changed", "booking.pacing_behind",
    "conversion.recorded", "quota.threshold_reached",
]  # fmt: skip
ExecutionStatus = Literal["pending", "running", "waiting", "succeeded", "failed", "cancelled"]
Operator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"]
Field_ = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$"),
    Field(description="A dotted path into the event payload, e.g. `to` or `campaign.stage`."),
]
MaxAttempts = Annotated[
    int, Field(ge=1, le=10, description="Tries of this step before the execution fails (default 3).")
]
Template = Annotated[
    str, Field(max_length=10_000, description="Text where `{{ path }}` is replaced by that payload field.")
]

MAX_STEPS = 20
MAX_DELAY_SECONDS = 30 * 86_400
# The longest a webhook step waits for its receiver (it was 30 s; steps stored with more run with this).
MAX_WEBHOOK_TIMEOUT_SECONDS = 10.0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(Strict):
    """Holds when the payload's ``field`` compares to ``value`` by ``operator`` (``exists`` and
    ``not_exists`` take no value; ``in``/``not_in`` take a list; ``contains`` a substring or item)."""

    field: Field_
    operator: Operator = "eq"
    value: Any = None


class _Step(Strict):
    max_attempts: MaxAttempts = 3


class WebhookStep(_Step):
    """POST the execution's JSON (``{workflow_id, execution_id, event, payload}``) to ``url``,
    signed in ``X-Castmetrics-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` with the
    workflow's secret. A 2xx answer is success; anything else (or no answer in ``timeout_seconds``)
    is a failed attempt."""

    type: Literal["webhook"]
    url: Annotated[str, StringConstraints(min_length=8, max_length=2000, pattern=r"^https?://")]
    timeout_seconds: Annotated[float, Field(gt=0, le=MAX_WEBHOOK_TIMEOUT_SECONDS)] = MAX_WEBHOOK_TIMEOUT_SECONDS


class EmailTo(Strict):
    users: list[uuid.UUID] = Field(default_factory=list, max_length=50)
    roles: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20
    )
    addresses: list[EmailStr] = Field(default_factory=list, max_length=50)


class EmailStep(_Step):
    """Email the tenant's users (by id), everyone holding a role (by name), and/or addresses."""

    type: Literal["email"]
    to: EmailTo
    subject: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    body: Template


class SetCampaignStageStep(_Step):
    """Move a campaign along its stage machine: ``campaign_id``, or the payload's ``campaign_id``."""

    type: Literal["set_campaign_stage"]
    stage: Literal["draft", "active", "paused", "completed", "cancelled"]
    campaign_id: uuid.UUID | None = None
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


class DelayStep(_Step):
    """Wait, durably (the execution is parked, no process sleeps), then go on."""

    type: Literal["delay"]
    seconds: Annotated[int, Field(ge=1, le=MAX_DELAY_SECONDS)]


class ConditionStep(_Step):
    """Stop the execution (as succeeded) unless the condition holds on the payload."""

    type: Literal["condition"]
    field: Field_
    operator: Operator = "eq"
    value: Any = None


class UpdateFeatureFlagStep(_Step):
    """Set the tenant's own value (override) of a feature flag."""

    type: Literal["update_feature_flag"]
    flag: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    enabled: bool


Step = Annotated[
    WebhookStep | EmailStep | SetCampaignStageStep | DelayStep | ConditionStep | UpdateFeatureFlagStep,
    Field(discriminator="type"),
]
STEP_TYPES = ("webhook", "email", "set_campaign_stage", "delay", "condition", "update_feature_flag")


class StepResult(BaseModel):
    """What happened to one step of an execution."""

    index: int
    type: str
    status: Literal["succeeded", "failed", "stopped", "waiting", "skipped"]
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    errors: list[str] = Field(default_factory=list, description="The error of each failed attempt, in order.")
