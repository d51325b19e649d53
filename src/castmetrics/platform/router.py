"""Platform admin routes: login, every tenant, and the global feature flags."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from castmetrics.auth.dependencies import settings_of
from castmetrics.flags import service as flags
from castmetrics.flags.schemas import FlagCreate, FlagNamePath, FlagOut, FlagUpdate
from castmetrics.http.pagination import CursorParam, Limit, Page
from castmetrics.platform import service
from castmetrics.platform.auth import admin_database, requires_platform_admin
from castmetrics.platform.schemas import AdminLoginIn, AdminTenantUpdate, AdminToken
from castmetrics.platform.service import PlatformPrincipal
from castmetrics.tenancy import service as tenancy
from castmetrics.tenancy.schemas import Status, TenantOut

router = APIRouter(prefix="/v1/admin", tags=["platform admin"])

Admin = Annotated[PlatformPrincipal, requires_platform_admin()]


@router.post("/login", response_model=AdminToken, summary="Log in as a platform administrator")
async def login(body: AdminLoginIn, request: Request) -> AdminToken:
    """Exchange an administrator's email and password for a platform token (valid as long as a
    tenant access token). Failures are slowed, then refused with 429, like tenant logins."""
    client = request.client.host if request.client else None
    return await service.login(admin_database(request), settings_of(request), str(body.email), body.password, client)


# --- tenants -------------------------------------------------------------------------------------


@router.get("/tenants", response_model=Page[TenantOut], summary="List every tenant")
async def list_tenants(
    principal: Admin,
    status_: Annotated[Status | None, Query(alias="status", description="Only tenants in this status.")] = None,
    limit: Limit = 50,
    cursor: CursorParam = None,
) -> Page[TenantOut]:
    """All tenants of the platform, newest first, optionally only those in one status."""
    tenants, next_cursor = await tenancy.list_page(principal.session, limit=limit, cursor=cursor, status=status_)
    return Page(items=[TenantOut.model_validate(t) for t in tenants], next_cursor=next_cursor)


@router.get("/tenants/{tenant_id}", response_model=TenantOut, summary="Get any tenant")
async def get_tenant(tenant_id: uuid.UUID, principal: Admin) -> TenantOut:
    """One tenant, whichever it is."""
    return TenantOut.model_validate(await tenancy.get(principal.session, tenant_id))


@router.patch("/tenants/{tenant_id}", response_model=TenantOut, summary="Change a tenant's status or tier")
async def update_tenant(tenant_id: uuid.UUID, body: AdminTenantUpdate, principal: Admin) -> TenantOut:
    """Suspend (reads only), cancel (nothing) or re-activate a tenant, and change its tier. An
    illegal status change answers 409. Each change is in the tenant's audit log under your id."""
    tenant = await tenancy.get(principal.session, tenant_id)
    return TenantOut.model_validate(await service.update_tenant(principal.session, principal, tenant, body))


# --- global feature flags ------------------------------------------------------------------------


@router.get("/feature-flags", response_model=Page[FlagOut], summary="List global feature flags")
async def list_flags(principal: Admin) -> Page[FlagOut]:
    """Every flag with its global default, by name (all in one page)."""
    return Page(items=[FlagOut.model_validate(f) for f in await flags.list_flags(principal.session)])


@router.post(
    "/feature-flags", status_code=status.HTTP_201_CREATED, response_model=FlagOut, summary="Create a feature flag"
)
async def create_flag(body: FlagCreate, principal: Admin) -> FlagOut:
    """A new flag and its global default (off unless `enabled`). A taken name answers 409."""
    return FlagOut.model_validate(await flags.create_flag(principal.session, body, principal.actor))


@router.patch("/feature-flags/{name}", response_model=FlagOut, summary="Update a feature flag")
async def update_flag(name: FlagNamePath, body: FlagUpdate, principal: Admin) -> FlagOut:
    """Change a flag's description or global default; tenants' overrides still win."""
    return FlagOut.model_validate(await flags.update_flag(principal.session, name, body, principal.actor))


@router.delete("/feature-flags/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a feature flag")
async def delete_flag(name: FlagNamePath, principal: Admin) -> Response:
    """Delete a flag and every tenant's override of it. A flag the code checks answers 409."""
    await flags.delete_flag(principal.session, name, principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
