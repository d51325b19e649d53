"""Builds the procrastinate app from every domain's blueprint and runs tasks in tenant context."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import procrastinate
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db import urls
from castmetrics.db.session import Database

P = ParamSpec("P")
R = TypeVar("R")

# Each domain with background work exposes ``blueprint`` in its tasks module.
DOMAINS_WITH_TASKS = ("outbox",)


def build(runtime_url: str) -> procrastinate.App:
    """A procrastinate app connected as the runtime role, with all domains' tasks."""
    connector = procrastinate.PsycopgConnector(conninfo=urls.libpq_url(runtime_url))
    app = procrastinate.App(connector=connector)
    for domain in DOMAINS_WITH_TASKS:
        module = importlib.import_module(f"castmetrics.{domain}.tasks")
        app.add_tasks_from(module.blueprint, namespace=domain)
    return app


def database_of(context: procrastinate.JobContext) -> Database:
    db = context.additional_context.get("db")
    if not isinstance(db, Database):
        raise RuntimeError("the worker was started without a Database in its additional context")
    return db


def in_tenant(
    fn: Callable[Concatenate[AsyncSession, P], Awaitable[R]],
) -> Callable[..., Awaitable[R]]:
    """Wrap a job body so it runs in a transaction acting for ``tenant_id`` — exactly like a request.

    The decorated task takes ``context`` (``pass_context=True``) and a ``tenant_id`` keyword.
    """

    @functools.wraps(fn)
    async def run(context: procrastinate.JobContext, *, tenant_id: str, **kwargs: Any) -> R:
        db = database_of(context)
        job_id = context.job.id if context.job else None
        with structlog.contextvars.bound_contextvars(tenant_id=tenant_id, job_id=job_id):
            async with db.tenant_transaction(tenant_id) as session:
                return await fn(session, **kwargs)

    return run
