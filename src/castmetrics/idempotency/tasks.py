"""Pruning idempotency keys: an answer is replayed for a day, then forgotten."""

from __future__ import annotations

import procrastinate
from sqlalchemy import text

from castmetrics.idempotency.service import KEEP_HOURS
from castmetrics.jobs.app import database_of

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="17 * * * *")
@blueprint.task(name="prune", pass_context=True, queueing_lock="idempotency.prune")
async def prune(context: procrastinate.JobContext, timestamp: int) -> None:
    """Periodic job: delete idempotency keys older than a day."""
    async with database_of(context).transaction() as session:
        await session.execute(text("SELECT prune_idempotency_keys(make_interval(hours => :h))"), {"h": KEEP_HOURS})
