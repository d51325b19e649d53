"""Background work of the sponsorship domain: the pacing check that announces bookings falling behind."""

from __future__ import annotations

import procrastinate
import structlog

from castmetrics.db.session import Database
from castmetrics.jobs.app import database_of, for_each_tenant
from castmetrics.sponsorship import pacing

log = structlog.get_logger(__name__)
blueprint = procrastinate.Blueprint()


async def check_all_tenants(db: Database) -> int:
    """Run the pacing check for every tenant with an unflagged live booking flying now (or ended
    yesterday), each in its own tenant transaction; answers how many bookings were announced behind."""
    total, tenants = await for_each_tenant(
        db, "SELECT pacing_tenants()", pacing.check_pacing, failure_event="pacing.check_failed"
    )
    if total:
        log.info("pacing.behind_announced", bookings=total, tenants=tenants)
    return total


# Delivery comes from the download rollups, refreshed every few seconds; ten minutes is plenty for an
# alert about a flight measured in days.
@blueprint.periodic(cron="*/10 * * * *")
@blueprint.task(name="check_pacing", pass_context=True, queueing_lock="sponsorship.pacing", retry=3)
async def check_pacing(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic job: announce ``booking.pacing_behind`` once for each live booking that fell behind."""
    return await check_all_tenants(database_of(context))
