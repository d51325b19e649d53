"""The rollup refresh job: every few seconds, refresh cycles over the tenants with new work, one after the
other while new rows remain (for at most ``BUDGET_SECONDS``, within the job's period)."""

from __future__ import annotations

from typing import Any

import procrastinate

from castmetrics.jobs.app import database_of, settings_of
from castmetrics.rollups import service

blueprint = procrastinate.Blueprint()


BUDGET_SECONDS = 4.0  # of the 5 s period


@blueprint.periodic(cron="* * * * * */5")
@blueprint.task(name="refresh", pass_context=True, queueing_lock="rollups.refresh", retry=3)
async def refresh(context: procrastinate.JobContext, timestamp: int) -> dict[str, Any]:
    """Periodic job: refresh cycles while new rows remain (``castmetrics rollups refresh`` runs one)."""
    cycles = await service.refresh_while_pending(
        database_of(context), cycle_events=settings_of(context).rollup_cycle_events, budget_seconds=BUDGET_SECONDS
    )
    return {
        "cycles": len(cycles),
        "events": sum(cycle.events for cycle in cycles),
        "seconds": round(sum(cycle.seconds for cycle in cycles), 3),
    }
