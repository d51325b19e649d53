"""Periodic delivery of queued email, one tenant transaction at a time."""

from __future__ import annotations

import procrastinate

from castmetrics.config import Settings, get_settings
from castmetrics.db.session import Database
from castmetrics.jobs.app import database_of, run_in_tenant
from castmetrics.mail import service

blueprint = procrastinate.Blueprint()


async def deliver_all(db: Database, settings: Settings) -> int:
    if settings.smtp_url is None:
        return 0
    async with db.transaction() as session:
        tenants = await service.pending_tenants(session)
    total = 0
    for tenant_id in tenants:
        total += await run_in_tenant(db, str(tenant_id), service.deliver_pending, settings)
    return total


@blueprint.periodic(cron="* * * * * */5")
@blueprint.task(name="deliver", pass_context=True, queueing_lock="mail.deliver", retry=3)
async def deliver(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic job: send pending email over SMTP (nothing to do without CASTMETRICS_SMTP_URL)."""
    settings = context.additional_context.get("settings") or get_settings()
    return await deliver_all(database_of(context), settings)
