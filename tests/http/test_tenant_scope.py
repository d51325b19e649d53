"""The request's tenant transaction: status rules (403 problems), commit and rollback, log context."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from sqlalchemy import func, select

from castmetrics.app import create_app
from castmetrics.audit import service as audit
from castmetrics.audit.models import AuditEntry
from castmetrics.auth.principal import Actor
from castmetrics.auth.service import TenantScope, acting_for
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.http.deps import get_database, is_write
from castmetrics.tenancy import service as tenancy
from tests.support.http import asgi_client


async def header_tenant(request: Request, x_test_tenant: Annotated[uuid.UUID, Header()]) -> AsyncIterator[TenantScope]:
    """Test stand-in for the authentication dependency: the tenant comes from a header."""
    async with acting_for(get_database(request), x_test_tenant, write=is_write(request)) as scope:
        yield scope


Scope = Annotated[TenantScope, Depends(header_tenant, scope="function")]


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/probe/tenant")
    async def read(scope: Scope) -> dict[str, str]:
        return {"name": scope.tenant.name}

    @router.post("/probe/tenant/notes", status_code=201)
    async def write(scope: Scope, fail: bool = False) -> dict[str, int]:
        await audit.record(
            scope.session,
            tenant_id=scope.tenant.id,
            actor=Actor("user", "u1"),
            action="create",
            entity_type="note",
            entity_id="n1",
        )
        if fail:
            raise RuntimeError("after the write")
        count = await scope.session.scalar(select(func.count()).select_from(AuditEntry))
        return {"entries": int(count or 0)}

    return router


@pytest.fixture(scope="module")
def scoped_app(settings: Settings, db: Database) -> FastAPI:
    app = create_app(settings, database=db)
    app.include_router(_router())
    return app


@pytest.fixture
async def http(scoped_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(scoped_app) as client:
        yield client


async def _status(owner_db: Database, tenant_id: uuid.UUID, status: str) -> None:
    async with owner_db.transaction() as session:
        tenant = await tenancy.get(session, tenant_id)
        await tenancy.set_status(session, tenant, status, Actor.system("tests"))


async def test_active_tenant_reads_and_writes(make_tenant, http: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant(name="Active Net")
    headers = {"X-Test-Tenant": str(tenant.id)}
    assert (await http.get("/probe/tenant", headers=headers)).json() == {"name": "Active Net"}
    created = await http.post("/probe/tenant/notes", headers=headers)
    assert created.status_code == 201
    assert created.json() == {"entries": 2}  # the tenant's creation entry and this one


async def test_suspended_tenant_reads_but_cannot_write(
    make_tenant, owner_db: Database, http: httpx.AsyncClient
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    await _status(owner_db, tenant.id, "suspended")
    headers = {"X-Test-Tenant": str(tenant.id)}
    assert (await http.get("/probe/tenant", headers=headers)).status_code == 200
    refused = await http.post("/probe/tenant/notes", headers=headers)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["reason"] == "tenant_suspended"


async def test_cancelled_tenant_is_refused_everywhere(make_tenant, owner_db: Database, http: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    await _status(owner_db, tenant.id, "cancelled")
    headers = {"X-Test-Tenant": str(tenant.id)}
    for response in (
        await http.get("/probe/tenant", headers=headers),
        await http.post("/probe/tenant/notes", headers=headers),
    ):
        assert response.status_code == 403
        assert response.json()["reason"] == "tenant_cancelled"


async def test_failed_request_rolls_back_its_writes(make_tenant, db: Database, http: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    failed = await http.post("/probe/tenant/notes?fail=true", headers={"X-Test-Tenant": str(tenant.id)})
    assert failed.status_code == 500
    async with db.tenant_transaction(tenant.id) as session:
        notes = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.entity_type == "note")
        )
    assert notes == 0


async def test_unknown_tenant_is_unauthorized(http: httpx.AsyncClient) -> None:
    response = await http.get("/probe/tenant", headers={"X-Test-Tenant": str(uuid.uuid4())})
    assert response.status_code == 401
