"""The runtime role's engine and the transactions every request and job run in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from castmetrics.db import urls

# Transaction-local (the third argument): the setting ends with the transaction, so a pooled
# connection never carries one tenant's context into the next transaction.
_SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")


async def set_tenant(session: AsyncSession, tenant_id: uuid.UUID | str) -> None:
    """Make the current transaction act for ``tenant_id``: RLS policies compare against it."""
    await session.execute(_SET_TENANT, {"tenant_id": str(uuid.UUID(str(tenant_id)))})


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
        """A transaction acting for one tenant; committed on success, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            await set_tenant(session, tenant_id)
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
