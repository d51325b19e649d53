"""Background work of the sponsorship domain: the pacing check that announces bookings falling behind."""

from __future__ import annotations

import procrastinate
import structlog
from sqlalchemy import text

from castmetrics.db.errors import is_connection_error
from castmetrics.db.session import Database
from castmetrics.jobs.app import database_of, run_in_tenant
from castmetrics.sponsorship import pacing

log = structlog.get_logger(__name__)
blueprint = procrastinate.Blueprint()


async def check_all_tenants(db: Database) -> int:
    """Run the pacing check for every tenant with an unflagged live booking flying now (or ended
    yesterday), each in its own tenant transaction; answers how many bookings were announced behind."""
    async with db.transaction() as session:
        tenants = list((await session.execute(text("SELECT pacing_tenants()"))).scalars())
    total = 0
    for tenant_id in tenants:
        try:
            total += await run_in_tenant(db, str(tenant_id), pacing.check_pacing, tenant_id)
        except Exception as exc:  # one tenant's failure must not hold up the others
            if is_connection_error(exc):
                raise
            log.exception("pacing.check_failed", tenant_id=str(tenant_id))
    if total:
        log.info("pacing.behind_announced", bookings=total, tenants=len(tenants))
    return total


# Delivery comes from the download rollups, refreshed every few seconds; ten minutes is plenty for an
# alert about a flight measured in days.
@blueprint.periodic(cron="*/10 * * * *")
@blueprint.task(name="check_pacing", pass_context=True, queueing_lock="sponsorship.pacing", retry=3)
async def check_pacing(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic job: announce ``booking.pacing_behind`` once for each live booking that fell behind."""
    return await check_all_tenants(database_of(context))
