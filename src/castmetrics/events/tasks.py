"""Background work of the events domain: partitions ahead and retention, and the rollup refresh."""

from __future__ import annotations

from typing import Any

import procrastinate
import structlog

from castmetrics.db.session import Database
from castmetrics.events import partitions, rollups
from castmetrics.jobs.app import database_of, for_each_tenant, settings_of

log = structlog.get_logger(__name__)
blueprint = procrastinate.Blueprint()


async def refresh_all(db: Database) -> int:
    """Refresh the rollups of every tenant with pending invalidations; answers the days recomputed."""
    total, tenants = await for_each_tenant(
        db, "SELECT rollup_pending_tenants()", rollups.refresh, failure_event="rollups.refresh_failed"
    )
    if total:
        log.info("rollups.refreshed", days=total, tenants=tenants)
    return total


# Hourly rather than daily: a missed run (worker down at midnight) costs an hour, not a day, and the
# week of partitions ahead covers far longer outages.
@blueprint.periodic(cron="17 * * * *")
@blueprint.task(name="maintain_partitions", pass_context=True, queueing_lock="events.partitions", retry=3)
async def maintain_partitions(context: procrastinate.JobContext, timestamp: int) -> dict[str, Any]:
    """Periodic job: partitions from yesterday to a week ahead; partitions past the retention dropped."""
    return await partitions.maintain(database_of(context), settings_of(context).event_retention_days)


@blueprint.periodic(cron="* * * * * */5")
@blueprint.task(name="refresh_rollups", pass_context=True, queueing_lock="events.rollups", retry=3)
async def refresh_rollups(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic job: recompute the rollup days that new events invalidated."""
    return await refresh_all(database_of(context))
