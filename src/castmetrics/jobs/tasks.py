"""Housekeeping of the queue itself: finished jobs are pruned so periodic work does not pile up."""

from __future__ import annotations

import procrastinate
from sqlalchemy import text

from castmetrics.http.idempotency import KEEP_HOURS as IDEMPOTENCY_KEEP_HOURS
from castmetrics.jobs.app import database_of

blueprint = procrastinate.Blueprint()

# Succeeded jobs are kept a day for inspection; failed ones a week, for diagnosis.
SUCCEEDED_HOURS = 24
FAILED_HOURS = 24 * 7


@blueprint.periodic(cron="17 * * * *")
@blueprint.task(name="prune", pass_context=True, queueing_lock="jobs.prune")
async def prune(context: procrastinate.JobContext, timestamp: int) -> None:
    """Delete finished jobs (succeeded after a day; failed, cancelled or aborted after a week) and
    idempotency keys older than a day."""
    db = database_of(context)
    async with db.transaction() as session:
        await session.execute(
            text("SELECT prune_idempotency_keys(make_interval(hours => :h))"), {"h": IDEMPOTENCY_KEEP_HOURS}
        )
    manager = context.app.job_manager
    await manager.delete_old_jobs(nb_hours=SUCCEEDED_HOURS)
    await manager.delete_old_jobs(
        nb_hours=FAILED_HOURS, include_failed=True, include_cancelled=True, include_aborted=True
    )
