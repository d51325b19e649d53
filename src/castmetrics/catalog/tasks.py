"""Scheduled feed syncs: every minute, the podcasts whose interval has passed are synced."""

from __future__ import annotations

import procrastinate
import structlog

from castmetrics.catalog import fetch, service
from castmetrics.config import Settings, get_settings
from castmetrics.db.session import Database
from castmetrics.jobs.app import database_of

log = structlog.get_logger(__name__)
blueprint = procrastinate.Blueprint()
BATCH = 50


async def sync_due(db: Database, settings: Settings, limit: int = BATCH) -> int:
    """Sync the podcasts that are due (each in its tenant's context); answers how many were tried."""
    due = await service.due_podcasts(db, limit)
    for tenant_id, podcast_id in due:
        with structlog.contextvars.bound_contextvars(tenant_id=str(tenant_id)):
            try:
                await service.sync_podcast(db, settings, tenant_id, podcast_id, "schedule")
            except fetch.FeedFetchError as exc:  # recorded in the sync history; next try after the interval
                log.warning("catalog.sync_failed", podcast_id=str(podcast_id), error=exc.detail)
    return len(due)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="sync_due", pass_context=True, queueing_lock="catalog.sync_due")
async def sync_due_task(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic job: sync every podcast whose sync interval (default hourly) has passed."""
    settings = context.additional_context.get("settings") or get_settings()
    return await sync_due(database_of(context), settings)
