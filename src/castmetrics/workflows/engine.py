"""Running workflows: starting executions from events, handing due ones to the queue, running steps.

An execution is a row of ``workflow_executions`` and the work queue at once:

* **Start.** ``dispatch_events`` (called by the outbox publisher, in the tenant's transaction) starts
  one execution per enabled workflow whose trigger and conditions match an event; the unique index on
  (workflow, event) makes a second dispatch of the same event start nothing. ``start`` does the same
  for a manual run or a re-run.
* **Dispatch.** ``claim_due`` (the ``workflows.dispatch`` job, every second) asks
  ``workflow_due_executions`` for what is due — pending, waiting past its time, or running with a lease
  that ran out (its worker died) — interleaved across tenants (each tenant's first before anyone's
  second), so a flood from one tenant cannot starve another's. Each one is claimed (status ``running``,
  a fresh ``claim`` id, a lease) and handed to the queue as a ``workflows.run`` job.
* **Run.** ``run_claimed`` runs the steps in order, each in its own tenant transaction that locks the
  row, checks the claim is still its own, runs the step and records its result: a step that succeeded
  is committed with its result and never runs again. A failed attempt parks the execution
  (``waiting``) until its retry time, with exponential backoff and jitter; after the step's
  ``max_attempts`` the execution fails. ``delay`` parks it until the time is up: no process sleeps.
  The lease is renewed at every step; a worker that dies loses its lease, and the next dispatch round
  gives the execution to another worker, which goes on from the first unfinished step.
* **Call.** A webhook never runs inside a transaction: the transaction that reaches it takes one of the
  tenant's ``workflow_webhooks_per_tenant`` call slots (``calling_until`` set, the lease stretched past
  the call's deadline), commits, and only then is the request made, holding no connection; its answer
  is recorded by a new transaction that checks the claim again. With every slot taken the execution is
  parked for about a second, no attempt counted: one tenant's slow receiver holds up its own workflows,
  never the database's connections or another tenant's requests.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.config import Settings
from castmetrics.db.errors import is_connection_error
from castmetrics.db.session import Database
from castmetrics.errors import Conflict
from castmetrics.jobs.app import run_in_tenant
from castmetrics.workflows import steps as step_runner
from castmetrics.workflows.models import Workflow, WorkflowExecution

log = structlog.get_logger(__name__)

FINISHED = ("succeeded", "failed", "cancelled")
RETRY_CAP = timedelta(hours=1)
MANUAL = "manual"


@dataclass(frozen=True)
class PublishedEvent:
    id: uuid.UUID
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Claimed:
    tenant_id: uuid.UUID
    execution_id: uuid.UUID
    claim: uuid.UUID


async def _now(session: AsyncSession) -> datetime:
    moment: datetime = (await session.execute(select(text("clock_timestamp()")))).scalar_one()
    return moment


# --- starting ------------------------------------------------------------------------------------


async def start(
    session: AsyncSession,
    workflow: Workflow,
    *,
    trigger_event: str,
    payload: dict[str, Any],
    event_id: uuid.UUID | None = None,
    created_by: uuid.UUID | None = None,
    rerun_of: uuid.UUID | None = None,
) -> WorkflowExecution:
    """A pending execution of ``workflow`` (with a copy of its steps), due now."""
    execution = WorkflowExecution(
        tenant_id=workflow.tenant_id, id=uuid.uuid4(), workflow_id=workflow.id, status="pending",
        trigger_event=trigger_event, event_id=event_id, payload=payload, steps=list(workflow.steps), results=[],
        created_by=created_by, rerun_of=rerun_of,
    )  # fmt: skip
    session.add(execution)
    await session.flush()
    await session.refresh(execution)
    return execution


def matches(workflow: Workflow, event: PublishedEvent) -> bool:
    return workflow.trigger_event == event.type and all(
        step_runner.condition_holds(event.payload, c["field"], c.get("operator", "eq"), c.get("value"))
        for c in workflow.conditions or []
    )


async def dispatch_events(session: AsyncSession, tenant_id: uuid.UUID, events: Sequence[PublishedEvent]) -> int:
    """Start the executions the tenant's published ``events`` trigger (in the publisher's transaction,
    so an event is dispatched exactly when it is published). Answers how many started."""
    types = {event.type for event in events}
    if not types:
        return 0
    workflows = (
        await session.scalars(select(Workflow).where(Workflow.enabled, Workflow.trigger_event.in_(types)))
    ).all()
    rows = [
        {
            "tenant_id": tenant_id,
            "id": uuid.uuid4(),
            "workflow_id": workflow.id,
            "status": "pending",
            "trigger_event": event.type,
            "event_id": event.id,
            "payload": event.payload,
            "steps": workflow.steps,
            "results": [],
        }  # fmt: skip
        for event in events
        for workflow in workflows
        if matches(workflow, event)
    ]
    if not rows:
        return 0
    statement = (
        insert(WorkflowExecution)
        .values(rows)
        .on_conflict_do_nothing(
            index_elements=["tenant_id", "workflow_id", "event_id"], index_where=text("event_id IS NOT NULL")
        )
        .returning(WorkflowExecution.id)
    )
    started = len((await session.execute(statement)).all())
    if started:
        log.info("workflows.started", count=started)
    return started


async def cancel(session: AsyncSession, execution: WorkflowExecution) -> WorkflowExecution:
    """Cancel an execution that has not finished: it runs no further step (a step under way finishes,
    but the worker finds the execution cancelled before the next one)."""
    locked = await session.scalar(
        select(WorkflowExecution)
        .where(WorkflowExecution.tenant_id == execution.tenant_id, WorkflowExecution.id == execution.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if locked is None:
        raise Conflict("the execution is gone")
    if locked.status in FINISHED:
        raise Conflict(f"the execution has already {locked.status.replace('cancelled', 'been cancelled')}")
    locked.status = "cancelled"
    locked.claim = None
    locked.lease_until = None
    locked.finished_at = await _now(session)
    await session.flush()
    await session.refresh(locked)
    return locked


# --- dispatching ---------------------------------------------------------------------------------

_CLAIM = text(
    """
    UPDATE workflow_executions
    SET status = 'running', claim = gen_random_uuid(), lease_until = clock_timestamp() + make_interval(secs => :lease),
        started_at = coalesce(started_at, clock_timestamp()), updated_at = clock_timestamp()
    WHERE id = ANY(CAST(:ids AS uuid[]))
      AND ((status IN ('pending', 'waiting') AND next_run_at <= clock_timestamp())
           OR (status = 'running' AND lease_until < clock_timestamp()))
    RETURNING id, claim
    """
)


async def _claim(session: AsyncSession, ids: list[uuid.UUID], lease: float) -> list[tuple[uuid.UUID, uuid.UUID]]:
    rows = await session.execute(_CLAIM, {"ids": ids, "lease": lease})
    return [(row.id, row.claim) for row in rows]


_DUE_OF_TENANT = text(
    """
    SELECT tenant_id, id FROM workflow_executions
    WHERE (status IN ('pending', 'waiting') AND next_run_at <= clock_timestamp())
       OR (status = 'running' AND lease_until < clock_timestamp())
    ORDER BY next_run_at, id
    LIMIT :batch
    """
)


async def claim_due(db: Database, settings: Settings, tenant_id: uuid.UUID | None = None) -> list[Claimed]:
    """Claim what is due, fairly across tenants (see the module doc), each tenant in its own context;
    with ``tenant_id``, only that tenant's."""
    params = {"per_tenant": settings.workflow_dispatch_per_tenant, "batch": settings.workflow_dispatch_batch}
    if tenant_id is None:
        async with db.transaction() as session:
            sql = text("SELECT tenant_id, execution_id FROM workflow_due_executions(:per_tenant, :batch)")
            due = [(row[0], row[1]) for row in await session.execute(sql, params)]
    else:
        async with db.tenant_transaction(tenant_id) as session:
            due = [(row[0], row[1]) for row in await session.execute(_DUE_OF_TENANT, params)]
    by_tenant: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for tenant_id, execution_id in due:
        by_tenant[tenant_id].append(execution_id)
    claimed: list[Claimed] = []
    for tenant_id, ids in by_tenant.items():
        for execution_id, claim in await run_in_tenant(
            db, str(tenant_id), _claim, ids, settings.workflow_lease_seconds
        ):
            claimed.append(Claimed(tenant_id, execution_id, claim))
    # Interleave tenants again (the per-tenant claims came back grouped): the queue is FIFO.
    order = {(t, e): n for n, (t, e) in enumerate(due)}
    claimed.sort(key=lambda c: order.get((c.tenant_id, c.execution_id), 0))
    return claimed


# --- running -------------------------------------------------------------------------------------


def retry_delay(attempt: int, base_seconds: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: ``base × 2^(attempt − 1)``, capped at an hour, times a random
    factor in [0.5, 1] (so retries of many executions spread out). With the default base of 2 s the
    first retry comes within 1–2 s."""
    raw = min(base_seconds * 2 ** (attempt - 1), RETRY_CAP.total_seconds())
    return timedelta(seconds=raw * (rng or random).uniform(0.5, 1.0))


def _result(index: int, step: dict[str, Any], previous: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"index": index, "type": step.get("type"), "errors": [], "attempts": 0}
    return {**base, **(previous or {}), **fields}


# Steps whose only effects are inside the database commit with their result: several of them can
# share a transaction. A webhook reaches outside: it is made between transactions (``Call``), and the
# transaction that records its answer commits before anything else happens.
EXTERNAL_STEPS = frozenset({"webhook"})


@dataclass(frozen=True)
class Call:
    """A webhook step's request, prepared (and its call slot taken) by a transaction that has committed."""

    index: int
    attempt: int
    started: str
    request: step_runner.WebhookCall


@dataclass(frozen=True)
class Delivered:
    """What a call came back with, handed to the transaction that records it: a result, or this attempt's error."""

    index: int
    attempt: int
    started: str
    output: dict[str, Any] | None = None
    error: Exception | None = None

    def result(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return self.output or {}


@dataclass
class _Run:
    """The row of an execution being advanced (read with its workflow's name and secret, written back
    in one UPDATE: the hot path of the queue goes without the ORM's unit of work)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    workflow_id: uuid.UUID
    status: str
    claim: uuid.UUID | None
    steps: list[dict[str, Any]]
    step_index: int
    attempts: int
    results: list[dict[str, Any]]
    payload: dict[str, Any]
    trigger_event: str
    event_id: uuid.UUID | None
    error: str | None
    next_run_at: datetime
    lease_until: datetime | None
    finished_at: datetime | None
    name: str
    secret: str
    creator: uuid.UUID | None
    now: datetime
    # Set when the next thing to do is a webhook call, outside any transaction; cleared when it is recorded.
    calling_until: datetime | None = None
    call: Call | None = None


_LOCK = text(
    """
    SELECT e.id, e.tenant_id, e.workflow_id, e.status, e.claim, e.steps, e.step_index, e.attempts, e.results,
           e.payload, e.trigger_event, e.event_id, e.error, e.next_run_at, e.lease_until, e.finished_at,
           w.name, w.secret, w.created_by AS creator, clock_timestamp() AS now
    FROM workflow_executions e
    JOIN workflows w ON w.tenant_id = e.tenant_id AND w.id = e.workflow_id
    WHERE e.tenant_id = :tenant_id AND e.id = :id
    FOR UPDATE OF e
    """
)
_SAVE = text(
    """
    UPDATE workflow_executions
    SET status = :status, step_index = :step_index, attempts = :attempts, results = CAST(:results AS jsonb),
        error = :error, next_run_at = :next_run_at, claim = :claim, lease_until = :lease_until,
        calling_until = :calling_until, finished_at = :finished_at, updated_at = clock_timestamp()
    WHERE tenant_id = :tenant_id AND id = :id
    """
)

# Beyond its timeout, how long a call keeps its slot (and the execution its lease): time to record it.
CALL_GRACE = timedelta(seconds=5)
# An execution that finds every call slot of its tenant taken tries again after about this long.
SLOT_WAIT_SECONDS = 1.0
# The tenant's calls in flight (any worker's): a partial index holds only the rows with a call.
_CALLS_IN_FLIGHT = text(
    "SELECT count(*) FROM workflow_executions WHERE calling_until > clock_timestamp() AND id <> :id"
)
_CALL_SLOTS_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:key))")


async def _take_call_slot(session: AsyncSession, settings: Settings, execution: _Run) -> bool:
    """Whether the tenant has a webhook call slot free for this execution. The lock serialises the
    tenant's slot takers until their transactions commit, so two cannot both take the last slot."""
    await session.execute(_CALL_SLOTS_LOCK, {"key": f"workflow-calls:{execution.tenant_id}"})
    busy = int(await session.scalar(_CALLS_IN_FLIGHT, {"id": execution.id}) or 0)
    return busy < settings.workflow_webhooks_per_tenant


async def _advance(
    session: AsyncSession, settings: Settings, claimed: Claimed, delivered: Delivered | None = None
) -> str | Call:
    """Run the execution's next steps in this transaction: any number of steps whose effects are in
    the database (and conditions), recording ``delivered`` (a webhook's answer) first if given, up to
    the next webhook. Answers the ``Call`` to make once this transaction has committed, ``continue``
    (more steps to run in a new transaction), or why to stop: ``succeeded``, ``failed``, ``waiting``
    (delay, retry, or no call slot free), ``lost`` (the claim is no longer ours: cancelled, or taken
    over after the lease ran out)."""
    row = (await session.execute(_LOCK, {"tenant_id": claimed.tenant_id, "id": claimed.execution_id})).first()
    if row is None or row.status != "running" or row.claim != claimed.claim:
        return "lost"
    run = _Run(**row._asdict())
    outcome = await _run_steps(session, settings, run, delivered)
    await session.execute(
        _SAVE,
        {
            "tenant_id": run.tenant_id, "id": run.id, "status": run.status, "step_index": run.step_index,
            "attempts": run.attempts, "results": orjson.dumps(run.results).decode(), "error": run.error,
            "next_run_at": run.next_run_at, "claim": run.claim, "lease_until": run.lease_until,
            "calling_until": run.calling_until, "finished_at": run.finished_at,
        },
    )  # fmt: skip
    if outcome == "call":
        assert run.call is not None
        return run.call
    return outcome


async def _run_steps(  # noqa: C901 - one loop over the step kinds, each branch a few lines
    session: AsyncSession, settings: Settings, execution: _Run, delivered: Delivered | None = None
) -> str:
    now = execution.now
    began = time.monotonic()

    def later() -> datetime:  # the database's clock, advanced by this process's (one round trip fewer)
        return now + timedelta(seconds=time.monotonic() - began)

    execution.lease_until = now + timedelta(seconds=settings.workflow_lease_seconds)
    results = execution.results
    while True:
        index = execution.step_index
        if index >= len(execution.steps):
            return _finish(execution, later(), "succeeded")
        step = execution.steps[index]
        previous = results[index] if index < len(results) else None

        def record(entry: dict[str, Any], index: int = index) -> None:
            if index < len(results):
                results[index] = entry
            else:
                results.append(entry)

        if step["type"] == "delay":
            if previous and previous.get("status") == "waiting":
                if later() < datetime.fromisoformat(previous["wait_until"]):
                    return _park(execution, datetime.fromisoformat(previous["wait_until"]))
                record(_result(index, step, previous, status="succeeded", finished_at=later().isoformat()))
                execution.step_index = index + 1
                continue
            until = later() + timedelta(seconds=int(step["seconds"]))
            record(_result(index, step, previous, status="waiting", started_at=later().isoformat(),
                           wait_until=until.isoformat()))  # fmt: skip
            return _park(execution, until)

        attempt = execution.attempts + 1
        context = step_runner.StepContext(
            session=session, settings=settings, tenant_id=execution.tenant_id, workflow_id=execution.workflow_id,
            workflow_name=execution.name, secret=execution.secret, execution_id=execution.id, step_index=index,
            attempt=attempt, trigger_event=execution.trigger_event, event_id=execution.event_id,
            payload=execution.payload, created_by=execution.creator,
        )  # fmt: skip
        started = (previous or {}).get("started_at") or later().isoformat()
        answer = (
            delivered if delivered is not None and (delivered.index, delivered.attempt) == (index, attempt) else None
        )
        delivered = None
        try:
            if answer is not None:
                started = answer.started
                output = answer.result()
            elif step["type"] in EXTERNAL_STEPS:
                request = step_runner.prepare_webhook(context, step)
                if not await _take_call_slot(session, settings, execution):
                    wait = SLOT_WAIT_SECONDS * random.uniform(0.5, 1.5)
                    return _park(execution, later() + timedelta(seconds=wait))
                execution.calling_until = later() + timedelta(seconds=request.timeout) + CALL_GRACE
                assert execution.lease_until is not None
                execution.lease_until = max(execution.lease_until, execution.calling_until)
                execution.call = Call(index, attempt, started, request)
                return "call"  # committed before the request is made
            else:
                output = await step_runner.run_step(context, step)
        except step_runner.StepStopped as exc:
            ended = later()
            record(_result(index, step, previous, status="stopped", attempts=attempt, started_at=started,
                           finished_at=ended.isoformat(), result={"stopped": str(exc) or True}))  # fmt: skip
            return _finish(execution, ended, "succeeded")
        except Exception as exc:
            if is_connection_error(exc):
                raise  # the database went away: the lease runs out and another worker goes on
            if not isinstance(exc, step_runner.StepError):
                log.exception("workflows.step_crashed", execution_id=str(execution.id), step=index)
            message = str(exc) or type(exc).__name__
            errors = [*(previous or {}).get("errors", []), message][-20:]
            final = isinstance(exc, step_runner.StepRefused) or attempt >= int(step.get("max_attempts", 3))
            ended = later()
            record(_result(index, step, previous, status="failed" if final else "waiting", attempts=attempt,
                           started_at=started, error=message, errors=errors,
                           finished_at=ended.isoformat() if final else None))  # fmt: skip
            execution.attempts = attempt
            if final:
                execution.error = f"step {index + 1} ({step['type']}) failed after {attempt} attempt(s): {message}"
                return _finish(execution, ended, "failed")
            return _park(execution, ended + retry_delay(attempt, settings.workflow_retry_base_seconds))
        record(_result(index, step, previous, status="succeeded", attempts=attempt, started_at=started,
                       finished_at=later().isoformat(), result=output, error=None))  # fmt: skip
        execution.step_index = index + 1
        execution.attempts = 0
        if step["type"] in EXTERNAL_STEPS and execution.step_index < len(execution.steps):
            return "continue"  # commit the delivery before anything else happens


def _park(execution: _Run, until: datetime) -> str:
    execution.status = "waiting"
    execution.next_run_at = until
    execution.claim = None
    execution.lease_until = None
    return "waiting"


def _finish(execution: _Run, now: datetime, status: str) -> str:
    execution.status = status
    execution.finished_at = now
    execution.claim = None
    execution.lease_until = None
    return status


async def _call(settings: Settings, call: Call) -> Delivered:
    """Make a prepared webhook call, outside any transaction, and keep what came of it."""
    try:
        output = await step_runner.deliver(call.request, settings)
    except Exception as exc:  # recorded as the step's attempt by the next transaction
        return Delivered(call.index, call.attempt, call.started, error=exc)
    return Delivered(call.index, call.attempt, call.started, output=output)


async def run_claimed(db: Database, settings: Settings, claimed: Claimed) -> str:
    """Run a claimed execution's steps until it finishes, parks or is no longer ours. Webhook calls are
    made between transactions: no connection is held while a receiver answers."""
    with structlog.contextvars.bound_contextvars(execution_id=str(claimed.execution_id)):
        delivered: Delivered | None = None
        while True:
            outcome = await run_in_tenant(db, str(claimed.tenant_id), _advance, settings, claimed, delivered)
            delivered = None
            if isinstance(outcome, Call):
                delivered = await _call(settings, outcome)
                continue
            if outcome != "continue":
                if outcome in ("succeeded", "failed"):
                    log.info("workflows.finished", status=outcome)
                return outcome


async def run_pending(db: Database, settings: Settings, tenant_id: uuid.UUID | None = None) -> int:
    """Claim and run, in this process, whatever is due (of one tenant, or all), until nothing is.
    For tests and the CLI; the worker does the same through the queue. Answers executions run."""
    ran = 0
    while True:
        claimed = await claim_due(db, settings, tenant_id)
        if not claimed:
            return ran
        for item in claimed:
            await run_claimed(db, settings, item)
            ran += 1


async def release(session: AsyncSession, execution_ids: Sequence[uuid.UUID]) -> None:
    """Hand claimed executions back (the queue refused them): they are due again at once."""
    await session.execute(
        update(WorkflowExecution)
        .where(WorkflowExecution.id.in_(execution_ids), WorkflowExecution.status == "running")
        .values(status="pending", claim=None, lease_until=None)
    )
