"""The current tenant: read, update, usage against quotas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from castmetrics.auth.dependencies import requires
from castmetrics.auth.principal import Principal
from castmetrics.quotas import service as quotas
from castmetrics.tenancy import service
from castmetrics.tenancy.schemas import TenantOut, TenantUpdate

router = APIRouter(prefix="/v1/tenant", tags=["tenant"])


@router.get("", response_model=TenantOut, summary="The current tenant")
async def get_tenant(principal: Annotated[Principal, requires("tenant", "read")]) -> TenantOut:
    """The tenant the credentials act for."""
    return TenantOut.model_validate(principal.tenant)


@router.patch("", response_model=TenantOut, summary="Update the tenant")
async def update_tenant(body: TenantUpdate, principal: Annotated[Principal, requires("tenant", "update")]) -> TenantOut:
    """Change the name, domain, billing email or time zone (an IANA name)."""
    tenant = await service.get(principal.session, principal.tenant.id)
    tenant = await service.update(principal.session, tenant, body, principal.actor)
    return TenantOut.model_validate(tenant)


@router.get("/usage", summary="Usage against quotas")
async def usage(principal: Annotated[Principal, requires("tenant", "read")]) -> dict[str, Any]:
    """Every counted quota's limit (null: unlimited) and usage, for the tier and this month."""
    return await quotas.report(principal.session, principal.tenant)
