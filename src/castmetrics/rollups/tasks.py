"""The rollup refresh job: every few seconds, one refresh cycle over the tenants with new work."""

from __future__ import annotations

from typing import Any

import procrastinate

from castmetrics.jobs.app import database_of, settings_of
from castmetrics.rollups import service

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="* * * * * */5")
@blueprint.task(name="refresh", pass_context=True, queueing_lock="rollups.refresh", retry=3)
async def refresh(context: procrastinate.JobContext, timestamp: int) -> dict[str, Any]:
    """Periodic job: one refresh cycle (``castmetrics rollups refresh`` runs the same one)."""
    cycle = await service.refresh_cycle(database_of(context), cycle_events=settings_of(context).rollup_cycle_events)
    return cycle.as_dict()
