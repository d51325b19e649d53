"""Housekeeping of the queue itself: finished jobs are pruned so periodic work does not pile up."""

from __future__ import annotations

import procrastinate

blueprint = procrastinate.Blueprint()

# Succeeded jobs are kept a day for inspection; failed ones a week, for diagnosis.
SUCCEEDED_HOURS = 24
FAILED_HOURS = 24 * 7


@blueprint.periodic(cron="17 * * * *")
@blueprint.task(name="prune", pass_context=True, queueing_lock="jobs.prune")
async def prune(context: procrastinate.JobContext, timestamp: int) -> None:
    """Delete finished jobs (succeeded after a day; failed, cancelled or aborted after a week)."""
    manager = context.app.job_manager
    await manager.delete_old_jobs(nb_hours=SUCCEEDED_HOURS)
    await manager.delete_old_jobs(
        nb_hours=FAILED_HOURS, include_failed=True, include_cancelled=True, include_aborted=True
    )
