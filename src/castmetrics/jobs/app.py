"""Builds the procrastinate app from every domain's blueprint and runs tasks in tenant context."""

from __future__ import annotations

import contextlib
import functools
import importlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import procrastinate
import psycopg_pool
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.config import Settings, get_settings
from castmetrics.db import urls
from castmetrics.db.errors import is_connection_error
from castmetrics.db.session import Database

P = ParamSpec("P")
R = TypeVar("R")

# Each domain with background work exposes ``blueprint`` in a tasks module, named here with the namespace
# its task names carry in the queue. The outbox's publishing job lives beside workflows (it starts the
# workflows the published events trigger) but keeps its queue name ``outbox:publish``, so jobs queued by
# an older worker still run after an upgrade.
TASK_MODULES = {
    "jobs": "castmetrics.jobs.tasks",
    "idempotency": "castmetrics.idempotency.tasks",
    "outbox": "castmetrics.workflows.publishing",
    "mail": "castmetrics.mail.tasks",
    "catalog": "castmetrics.catalog.tasks",
    "events": "castmetrics.events.tasks",
    "rollups": "castmetrics.rollups.tasks",
    "sponsorship": "castmetrics.sponsorship.tasks",
    "workflows": "castmetrics.workflows.tasks",
}


def _queue() -> procrastinate.App:
    # One app per process, its tasks merged exactly once: procrastinate renames tasks in place when
    # it adds a namespace, and binds periodic tasks to the app that merged them. Connections come
    # from a pool handed over when the app is opened (see ``opened``).
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    for namespace, module_name in TASK_MODULES.items():
        module = importlib.import_module(module_name)
        app.add_tasks_from(module.blueprint, namespace=namespace)
    return app


_QUEUE: procrastinate.App | None = None


def queue() -> procrastinate.App:
    """The process's procrastinate app with every domain's tasks (not yet connected)."""
    global _QUEUE
    if _QUEUE is None:
        _QUEUE = _queue()
    return _QUEUE


@contextlib.asynccontextmanager
async def opened(runtime_url: str, max_size: int = 4) -> AsyncIterator[procrastinate.App]:
    """The queue connected as the runtime role for the duration of the block. Each opening has a
    connector of its own: procrastinate's keeps the first pool it was handed even once that is closed,
    so a worker restarted after a lost database would otherwise only ever get ``PoolClosed``."""
    pool = psycopg_pool.AsyncConnectionPool(
        urls.libpq_url(runtime_url),
        min_size=1,
        max_size=max_size,
        open=False,
        check=psycopg_pool.AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True)
    try:
        with queue().replace_connector(procrastinate.PsycopgConnector()) as app:
            async with app.open_async(pool):
                yield app
    finally:
        await pool.close()


def settings_of(context: procrastinate.JobContext) -> Settings:
    """The settings the worker was started with (the environment's when it was started without)."""
    settings = context.additional_context.get("settings")
    return settings if isinstance(settings, Settings) else get_settings()


async def for_each_tenant(
    db: Database,
    tenants_sql: str,
    fn: Callable[[AsyncSession, uuid.UUID], Awaitable[int]],
    *,
    failure_event: str,
) -> tuple[int, int]:
    """Run ``fn(session, tenant_id)`` for each tenant id that ``tenants_sql`` (a narrow SECURITY DEFINER
    function) answers, each in its own tenant transaction; one tenant's failure is logged and does not
    hold up the others (a lost database connection stops the round). Answers (sum of results, tenants)."""
    async with db.transaction() as session:
        tenants = list((await session.execute(text(tenants_sql))).scalars())
    total = 0
    for tenant_id in tenants:
        try:
            total += await run_in_tenant(db, str(tenant_id), fn, tenant_id)
        except Exception as exc:
            if is_connection_error(exc):
                raise
            structlog.get_logger(__name__).exception(failure_event, tenant_id=str(tenant_id))
    return total, len(tenants)


def database_of(context: procrastinate.JobContext) -> Database:
    db = context.additional_context.get("db")
    if not isinstance(db, Database):
        raise RuntimeError("the worker was started without a Database in its additional context")
    return db


async def run_in_tenant(
    db: Database,
    tenant_id: str,
    fn: Callable[Concatenate[AsyncSession, P], Awaitable[R]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Run ``fn(session, ...)`` in one transaction acting for ``tenant_id``, logging with its id."""
    with structlog.contextvars.bound_contextvars(tenant_id=tenant_id):
        async with db.tenant_transaction(tenant_id) as session:
            return await fn(session, *args, **kwargs)


def in_tenant(
    fn: Callable[Concatenate[AsyncSession, P], Awaitable[R]],
) -> Callable[..., Awaitable[R]]:
    """Wrap a job body so it runs in a transaction acting for ``tenant_id`` — exactly like a request.

    Decorate with ``@blueprint.task(pass_context=True)`` on top; the job is deferred with a
    ``tenant_id`` keyword, and the body receives the tenant's session first.
    """

    @functools.wraps(fn)
    async def run(context: procrastinate.JobContext, *, tenant_id: str, **kwargs: Any) -> R:
        job_id = context.job.id if context.job else None
        with structlog.contextvars.bound_contextvars(job_id=job_id):
            body: Callable[..., Awaitable[R]] = fn
            return await run_in_tenant(database_of(context), tenant_id, body, **kwargs)

    return run
