"""Tenant routes of feature flags: the effective flags, and the tenant's own overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status

from castmetrics.auth.dependencies import requires
from castmetrics.auth.principal import Principal
from castmetrics.flags import service
from castmetrics.flags.schemas import FlagNamePath, FlagValue, OverrideIn

router = APIRouter(prefix="/v1/feature-flags", tags=["feature flags"])


@router.get("", response_model=dict[str, bool], summary="Effective feature flags")
async def effective_flags(principal: Annotated[Principal, requires("feature_flags", "read")]) -> dict[str, bool]:
    """Every flag's value for the current tenant, `{name: bool}`: the tenant's override where it
    set one, else the platform's default."""
    return await service.effective(principal.session, principal.tenant.id)


@router.put("/{name}", response_model=FlagValue, summary="Override a feature flag")
async def set_override(
    name: FlagNamePath, body: OverrideIn, principal: Annotated[Principal, requires("feature_flags", "update")]
) -> FlagValue:
    """Set the tenant's own value of a flag, whatever the platform's default. An unknown flag
    answers 404. Answers the flag's effective value."""
    enabled = await service.set_override(principal.session, principal, name, body.enabled)
    return FlagValue(name=name, enabled=enabled)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a feature flag override")
async def clear_override(
    name: FlagNamePath, principal: Annotated[Principal, requires("feature_flags", "delete")]
) -> Response:
    """Drop the tenant's override: the platform's default applies again. Idempotent; an unknown
    flag answers 404."""
    await service.clear_override(principal.session, principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
