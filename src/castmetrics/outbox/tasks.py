"""Background publishing of the outbox, every few seconds, one tenant transaction at a time."""

from __future__ import annotations

import procrastinate
import structlog

from castmetrics.jobs.app import database_of
from castmetrics.observability import JOBS_PUBLISHED
from castmetrics.outbox import service

log = structlog.get_logger(__name__)
blueprint = procrastinate.Blueprint()

PUBLISH_BATCH = 500


@blueprint.periodic(cron="* * * * * */5")
@blueprint.task(name="publish", pass_context=True, queueing_lock="outbox.publish", retry=3)
async def publish(context: procrastinate.JobContext, timestamp: int) -> int:
    """Publish every tenant's pending outbox events; answers how many were published."""
    db = database_of(context)
    async with db.transaction() as session:
        tenants = await service.pending_tenants(session)
    total = 0
    for tenant_id in tenants:
        with structlog.contextvars.bound_contextvars(tenant_id=str(tenant_id)):
            async with db.tenant_transaction(tenant_id) as session:
                published = await service.publish_pending(session, PUBLISH_BATCH)
            if published:
                log.info("outbox.published", count=published)
        total += published
    JOBS_PUBLISHED.inc(total)
    return total
