"""The rollup refresh job: every few seconds, the days new events invalidated are recomputed."""

from __future__ import annotations

import procrastinate

from castmetrics.jobs.app import database_of
from castmetrics.rollups import service

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="* * * * * */5")
@blueprint.task(name="refresh", pass_context=True, queueing_lock="rollups.refresh", retry=3)
async def refresh(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic job: recompute the rollup days that new events invalidated."""
    return await service.refresh_all(database_of(context))
