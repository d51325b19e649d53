"""Jobs run in their tenant's context, exactly like requests."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.session import Database
from castmetrics.jobs.app import queue, run_in_tenant


async def _visible(session: AsyncSession, label: str) -> tuple[str, list[str]]:
    tenant = (await session.execute(text("SELECT current_setting('app.tenant_id', true)"))).scalar_one()
    slugs = (await session.execute(text("SELECT slug FROM tenants"))).scalars().all()
    return label, [tenant, *slugs]


async def test_run_in_tenant_sets_the_jobs_tenant(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    a = await make_tenant("job-a")
    await make_tenant("job-b")
    label, seen = await run_in_tenant(db, str(a.id), _visible, "x")
    assert label == "x"
    assert seen == [str(a.id), "job-a"]


def test_every_domain_task_is_registered() -> None:
    app = queue()
    names = {task.name for task in app.tasks.values()}
    periodic = {p.task.name for p in app.periodic_registry.periodic_tasks.values()}
    assert {"outbox:publish", "jobs:prune"} <= names
    assert {"outbox:publish", "jobs:prune"} <= periodic
