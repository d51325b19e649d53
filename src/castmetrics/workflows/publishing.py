"""Publishing the outbox and starting the workflows its events trigger: every few seconds, one tenant
transaction at a time (queued as ``outbox:publish``, see ``jobs.app.TASK_MODULES``)."""

from __future__ import annotations

import uuid

import procrastinate
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.session import Database
from castmetrics.jobs.app import database_of, run_in_tenant
from castmetrics.observability import JOBS_PUBLISHED
from castmetrics.outbox import service
from castmetrics.workflows import engine as workflows

log = structlog.get_logger(__name__)
blueprint = procrastinate.Blueprint()

PUBLISH_BATCH = 500


async def publish_and_dispatch(session: AsyncSession, tenant_id: uuid.UUID, batch: int) -> int:
    """Publish the tenant's pending events and start the workflows they trigger, in one transaction."""
    rows = await service.publish_pending_events(session, batch)
    events = [workflows.PublishedEvent(row.id, row.event_type, row.payload or {}) for row in rows]
    await workflows.dispatch_events(session, tenant_id, events)
    return len(rows)


async def publish_all(db: Database, batch: int = PUBLISH_BATCH) -> int:
    """Publish every tenant's pending outbox events, each tenant in its own tenant transaction."""
    async with db.transaction() as session:
        tenants = await service.pending_tenants(session)
    total = 0
    for tenant_id in tenants:
        published = await run_in_tenant(db, str(tenant_id), publish_and_dispatch, tenant_id, batch)
        if published:
            log.info("outbox.published", count=published, tenant_id=str(tenant_id))
        total += published
    JOBS_PUBLISHED.inc(total)
    return total


@blueprint.periodic(cron="* * * * * */5")
@blueprint.task(name="publish", pass_context=True, queueing_lock="outbox.publish", retry=3)
async def publish(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic job: publish pending outbox events; answers how many were published."""
    return await publish_all(database_of(context))
