"""Background work of workflows: the dispatcher (every second) and one job per claimed execution."""

from __future__ import annotations

import asyncio
import time
import uuid

import procrastinate
import structlog
from procrastinate import types

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.jobs.app import database_of, settings_of
from castmetrics.workflows import engine

log = structlog.get_logger(__name__)
blueprint = procrastinate.Blueprint()


# A job runs up to this many executions of one tenant side by side: the queue's own bookkeeping
# (a row written, fetched, finished) is paid once for them, not once each.
EXECUTIONS_PER_JOB = 25
# ... of which this many at once (a slow receiver holds up one slot, not the whole job).
JOB_PARALLELISM = 5


@blueprint.task(name="run", pass_context=True)
async def run(context: procrastinate.JobContext, *, tenant_id: str, executions: list[list[str]]) -> list[str]:
    """Run claimed executions of one tenant (``[execution_id, claim]`` pairs), concurrently, each until it
    finishes or parks. Retries are the engine's, not the queue's: a crash leaves the leases to run out,
    and the dispatcher hands the executions to another worker."""
    db, settings = database_of(context), settings_of(context)
    tenant = uuid.UUID(tenant_id)
    claims = [engine.Claimed(tenant, uuid.UUID(execution_id), uuid.UUID(claim)) for execution_id, claim in executions]
    slots = asyncio.Semaphore(JOB_PARALLELISM)

    async def one(claimed: engine.Claimed) -> str:
        async with slots:
            return await engine.run_claimed(db, settings, claimed)

    outcomes = await asyncio.gather(*(one(c) for c in claims), return_exceptions=True)
    for claimed, outcome in zip(claims, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log.error("workflows.run_failed", execution_id=str(claimed.execution_id), error=repr(outcome))
    return [outcome if isinstance(outcome, str) else "error" for outcome in outcomes]


def jobs_for(claimed: list[engine.Claimed], per_job: int = EXECUTIONS_PER_JOB) -> list[types.JSONDict]:
    """The ``run`` jobs for claimed executions: each tenant's in chunks, in the order the dispatcher
    interleaved them (so the queue, first in first out, stays fair between tenants)."""
    open_chunks: dict[uuid.UUID, list[list[str]]] = {}
    jobs: list[types.JSONDict] = []
    for c in claimed:
        chunk = open_chunks.get(c.tenant_id)
        if chunk is None or len(chunk) >= per_job:
            chunk = []
            open_chunks[c.tenant_id] = chunk
            jobs.append({"tenant_id": str(c.tenant_id), "executions": chunk})  # type: ignore[dict-item]
        chunk.append([str(c.execution_id), str(c.claim)])
    return jobs


# Within one run of the periodic dispatcher, hand out work again every this many seconds while
# executions are due (the queue's own clock ticks once a second).
DISPATCH_EVERY = 0.2
DISPATCH_FOR = 0.9


async def dispatch_once(db: Database, settings: Settings) -> int:
    """Claim the due executions, fairly across tenants, and queue ``run`` jobs for them."""
    claimed = await engine.claim_due(db, settings)
    if not claimed:
        return 0
    try:
        await run.batch_defer_async(*jobs_for(claimed))
    except Exception:
        log.exception("workflows.defer_failed", count=len(claimed))
        for tenant_id in {c.tenant_id for c in claimed}:
            ids = [c.execution_id for c in claimed if c.tenant_id == tenant_id]
            async with db.tenant_transaction(tenant_id) as session:
                await engine.release(session, ids)
        raise
    return len(claimed)


@blueprint.periodic(cron="* * * * * *")
@blueprint.task(name="dispatch", pass_context=True, queueing_lock="workflows.dispatch")
async def dispatch(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic job (every second): dispatch, and again every 0.2 s for most of the second while
    there is work, so a busy queue is refilled as it drains."""
    db, settings = database_of(context), settings_of(context)
    deadline = time.monotonic() + DISPATCH_FOR
    total = 0
    while True:
        claimed = await dispatch_once(db, settings)
        total += claimed
        if not claimed or time.monotonic() + DISPATCH_EVERY > deadline:
            return total
        await asyncio.sleep(DISPATCH_EVERY)
