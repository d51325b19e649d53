"""The runtime role's engine and the transactions every request and job run in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy import ColumnElement, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from castmetrics.db import urls


def set_tenant_sql(tenant_id: uuid.UUID | str) -> str:
    """The statement that makes a transaction act for ``tenant_id``. ``SET LOCAL``: the setting ends with
    the transaction, so a pooled connection never carries one tenant's context into the next one; and on
    Citus it is the form that reaches the workers' shards (``citus.propagate_set_commands = 'local'``),
    where ``set_config()`` is not propagated and RLS would fail closed. The value is a parsed UUID, so the
    literal cannot carry anything else."""
    return f"SET LOCAL app.tenant_id = '{uuid.UUID(str(tenant_id))}'"


# ``session.info`` key of the tenant a ``tenant_transaction`` acts for.
TENANT = "castmetrics.tenant_id"


def tenant_of(session: AsyncSession) -> uuid.UUID | None:
    """The tenant the session's transaction acts for (``Database.tenant_transaction``, ``set_tenant``), if any."""
    found = session.info.get(TENANT)
    return found if isinstance(found, uuid.UUID) else None


def own_rows(session: AsyncSession, tenant_column: Any) -> list[ColumnElement[bool]]:
    """``tenant_column = <the session's tenant>`` as a WHERE criterion (none without a tenant). Queries that
    lock rows name the tenant beside row-level security: Citus routes a ``FOR UPDATE`` to a shard only with
    the distribution column's value in the query, and refuses it otherwise."""
    tenant_id = tenant_of(session)
    return [] if tenant_id is None or tenant_column is None else [tenant_column == tenant_id]


async def set_tenant(session: AsyncSession, tenant_id: uuid.UUID | str) -> None:
    """Make the current transaction act for ``tenant_id``: RLS policies compare against it."""
    session.info[TENANT] = uuid.UUID(str(tenant_id))
    await session.execute(text(set_tenant_sql(tenant_id)))


class Database:
    """A pool of connections logged in as the runtime role (never the owner)."""

    def __init__(
        self,
        runtime_url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        application_name: str = "castmetrics",
    ) -> None:
        self.url = runtime_url
        self.engine: AsyncEngine = create_async_engine(
            urls.sqlalchemy_url(runtime_url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            # Names each process kind in pg_stat_activity, so operators see who holds connections.
            # A database that silently drops packets must fail a connect within seconds (answered 503),
            # not hang with a pool slot taken.
            connect_args={"application_name": application_name, "connect_timeout": 10},
            pool_timeout=10,
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A transaction with no tenant: tenant tables answer no rows (RLS fails closed)."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def tenant_transaction(self, tenant_id: uuid.UUID | str) -> AsyncIterator[AsyncSession]:
        """A transaction acting for one tenant; committed on success, rolled back on error. Its ``BEGIN``
        and ``SET LOCAL`` go to the server together (psycopg's pipeline mode): one round trip, not two."""
        async with self.sessionmaker() as session, session.begin():
            session.info[TENANT] = uuid.UUID(str(tenant_id))
            raw = await (await session.connection()).get_raw_connection()
            driver = raw.driver_connection
            if isinstance(driver, psycopg.AsyncConnection):
                async with driver.pipeline():
                    await driver.execute(set_tenant_sql(tenant_id))
            else:
                await set_tenant(session, tenant_id)
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
