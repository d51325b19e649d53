"""Background work of the events domain: partitions ahead and retention."""

from __future__ import annotations

from typing import Any

import procrastinate
import structlog

from castmetrics.events import partitions
from castmetrics.jobs.app import database_of, settings_of

log = structlog.get_logger(__name__)
blueprint = procrastinate.Blueprint()


# Hourly rather than daily: a missed run (worker down at midnight) costs an hour, not a day, and the
# week of partitions ahead covers far longer outages.
@blueprint.periodic(cron="17 * * * *")
@blueprint.task(name="maintain_partitions", pass_context=True, queueing_lock="events.partitions", retry=3)
async def maintain_partitions(context: procrastinate.JobContext, timestamp: int) -> dict[str, Any]:
    """Periodic job: partitions from yesterday to a week ahead; partitions past the retention dropped; on
    Citus, days older than CASTMETRICS_COLUMNAR_AFTER_DAYS converted to columnar storage."""
    settings = settings_of(context)
    return await partitions.maintain(
        database_of(context), settings.event_retention_days, columnar_after_days=settings.columnar_after_days
    )
