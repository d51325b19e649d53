"""Tenant lifecycle: create, read, update, suspend and activate, and what each status allows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit import service as audit
from castmetrics.auth import service as auth
from castmetrics.auth.principal import Actor
from castmetrics.changes import record_change
from castmetrics.db.repository import Repository
from castmetrics.errors import Conflict, NotFound
from castmetrics.tenancy.models import Tenant
from castmetrics.tenancy.schemas import TenantCreate, TenantUpdate

AUDITED_FIELDS = ("name", "slug", "domain", "subscription_tier", "status", "billing_email", "time_zone")

_tenants = Repository(Tenant, moment=Tenant.created_at)


def snapshot(tenant: Tenant) -> dict[str, Any]:
    return {field: getattr(tenant, field) for field in AUDITED_FIELDS}


def ensure_access(tenant: Tenant, *, write: bool) -> None:
    """Suspended tenants may read but not write or ingest; cancelled tenants may do nothing."""
    auth.ensure_access(tenant.status, write=write)


async def create(session: AsyncSession, data: TenantCreate, actor: Actor, tenant_id: uuid.UUID | None = None) -> Tenant:
    """Create a tenant. A taken slug or domain is a Conflict. Runs as the owner (CLI), or as the
    runtime role in a transaction already acting for ``tenant_id`` (sign-up): RLS admits no other."""
    tenant_id = tenant_id or uuid.uuid4()
    tenant = Tenant(
        id=tenant_id,
        name=data.name,
        slug=data.slug,
        domain=data.domain,
        subscription_tier=data.subscription_tier,
        billing_email=data.billing_email,
        time_zone=data.time_zone,
        metadata_=data.metadata,
    )
    session.add(tenant)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        taken = "domain" if "domain" in str(exc.orig) else "slug"
        value = data.domain if taken == "domain" else data.slug
        raise Conflict(f"the tenant {taken} {value!r} is already in use", field=taken) from exc
    await session.refresh(tenant)
    await record_change(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action="create",
        entity_type="tenant",
        entity_id=tenant_id,
        after=snapshot(tenant),
        event_type="tenant.created",
        payload={"slug": tenant.slug, "subscription_tier": tenant.subscription_tier},
    )
    return tenant


async def get(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("no such tenant")
    return tenant


async def get_by_slug(session: AsyncSession, slug: str) -> Tenant:
    return await _tenants.get_by(session, Tenant.slug == slug, missing=f"no tenant with slug {slug!r}")


async def list_page(
    session: AsyncSession, *, limit: int = 50, cursor: str | None = None, status: str | None = None
) -> tuple[Sequence[Tenant], str | None]:
    """Tenants newest first (as many as the session may see: one in a tenant context)."""
    statement = select(Tenant)
    if status:
        statement = statement.where(Tenant.status == status)
    return await _tenants.page(session, statement, limit=limit, cursor=cursor)


async def update(session: AsyncSession, tenant: Tenant, data: TenantUpdate, actor: Actor) -> Tenant:
    before = snapshot(tenant)
    for field, value in data.model_dump(exclude_unset=True).items():
        if field in ("name", "time_zone") and value is None:
            continue
        setattr(tenant, field, value)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"the tenant domain {data.domain!r} is already in use", field="domain") from exc
    await session.refresh(tenant)
    await audit.record(
        session, tenant_id=tenant.id, actor=actor, action="update", entity_type="tenant", entity_id=tenant.id,
        before=before, after=snapshot(tenant),
    )  # fmt: skip
    return tenant


# Target status -> the statuses a tenant may reach it from.
_ALLOWED_FROM = {
    "suspended": {"active"},
    "active": {"suspended", "cancelled"},
    "cancelled": {"active", "suspended"},
}


async def set_status(session: AsyncSession, tenant: Tenant, status: str, actor: Actor) -> Tenant:
    """The operator's decision on a tenant (``active``, ``suspended``, ``cancelled``); idempotent."""
    if status not in _ALLOWED_FROM:
        raise Conflict(f"unknown tenant status {status!r}")
    if tenant.status == status:
        return tenant
    if tenant.status not in _ALLOWED_FROM[status]:
        raise Conflict(f"a {tenant.status} tenant cannot become {status}")
    before = snapshot(tenant)
    tenant.status = status
    await session.flush()
    await session.refresh(tenant)
    await record_change(
        session, tenant_id=tenant.id, actor=actor, action="update", entity_type="tenant", entity_id=tenant.id,
        before=before, after=snapshot(tenant), event_type=f"tenant.{status}", payload={"slug": tenant.slug},
    )  # fmt: skip
    return tenant
