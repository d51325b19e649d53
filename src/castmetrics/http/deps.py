"""Dependencies every route shares: the database, and the tenant transaction a request acts in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.db.session import Database
from castmetrics.errors import Unauthorized
from castmetrics.tenancy import service as tenancy
from castmetrics.tenancy.models import Tenant

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_database(request: Request) -> Database:
    db = request.app.state.db
    assert isinstance(db, Database)
    return db


@dataclass(frozen=True)
class TenantScope:
    """What a tenant-scoped route works with: its transaction and the tenant it acts for."""

    session: AsyncSession
    tenant: Tenant


@asynccontextmanager
async def acting_for(db: Database, tenant_id: uuid.UUID, *, write: bool) -> AsyncIterator[TenantScope]:
    """One transaction acting for ``tenant_id``: RLS context set, tenant status enforced (a
    suspended tenant may only read, a cancelled one nothing), ``tenant_id`` bound to every log
    line. Commits when the block succeeds, rolls back when it raises.

    The authentication dependency resolves ``tenant_id`` from the credentials and enters this with
    ``write`` true for any method but GET, HEAD and OPTIONS; routes receive the ``TenantScope``.
    """
    async with db.tenant_transaction(tenant_id) as session:
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:  # credentials for a tenant that no longer exists
            raise Unauthorized("the credentials belong to no tenant")
        tenancy.ensure_access(tenant, write=write)
        structlog.contextvars.bind_contextvars(tenant_id=str(tenant_id))
        yield TenantScope(session=session, tenant=tenant)


def is_write(request: Request) -> bool:
    return request.method.upper() not in READ_METHODS
