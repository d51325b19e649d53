"""Resolving credentials to a principal: the API-key lookup, the tenant's access rules, and the rows
the principal is made of, read with SQL (the credential tables are read here, written by identity)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.auth import tokens
from castmetrics.auth.cache import Resolved
from castmetrics.auth.principal import ApiKeyContext, Principal, TenantContext, UserContext
from castmetrics.auth.scopes import effective_permissions
from castmetrics.db.session import Database
from castmetrics.errors import Forbidden, Unauthorized

_TENANT = text(
    """
    SELECT id, name, slug, domain, subscription_tier, status, subscription_status, billing_email, time_zone,
           metadata AS metadata_, created_at, updated_at
    FROM tenants WHERE id = :t
    """
)
# The user, and whether the login session an access token was issued for (a refresh-token family) is still
# live: logout, a password reset, deactivation or a replayed refresh token revoke every row of the family.
_USER = text(
    """
    SELECT tenant_id, id, email, name, email_verified, is_active,
           (CAST(:sid AS uuid) IS NULL OR EXISTS (
                SELECT 1 FROM refresh_tokens r
                WHERE r.tenant_id = u.tenant_id AND r.family_id = CAST(:sid AS uuid) AND r.user_id = u.id
                  AND r.revoked_at IS NULL
           )) AS session_live
    FROM users u WHERE tenant_id = :t AND id = :u
    """
)
_API_KEY = text("SELECT id, user_id, name, prefix, scopes, revoked_at FROM api_keys WHERE tenant_id = :t AND id = :k")
# The user's roles and the union of their permissions (a user without roles has neither).
_ROLES_AND_PERMISSIONS = text(
    """
    SELECT coalesce(array_agg(DISTINCT r.name ORDER BY r.name), '{}') AS roles,
           coalesce((SELECT array_agg(DISTINCT rp.permission)
                     FROM user_roles ur2
                     JOIN role_permissions rp ON rp.tenant_id = ur2.tenant_id AND rp.role_id = ur2.role_id
                     WHERE ur2.tenant_id = :t AND ur2.user_id = :u), '{}') AS permissions
    FROM user_roles ur JOIN roles r ON r.tenant_id = ur.tenant_id AND r.id = ur.role_id
    WHERE ur.tenant_id = :t AND ur.user_id = :u
    """
)


def ensure_access(status: str, *, write: bool) -> None:
    """Suspended tenants may read but not write or ingest; cancelled tenants may do nothing."""
    if status == "cancelled":
        raise Forbidden("this tenant is cancelled", reason="tenant_cancelled")
    if write and status == "suspended":
        raise Forbidden("this tenant is suspended: it may read but not change data", reason="tenant_suspended")


@dataclass(frozen=True)
class TenantScope:
    """What a tenant-scoped request works with: its transaction and the tenant it acts for."""

    session: AsyncSession
    tenant: TenantContext


@asynccontextmanager
async def acting_for(db: Database, tenant_id: uuid.UUID, *, write: bool) -> AsyncIterator[TenantScope]:
    """One transaction acting for ``tenant_id``, read fresh (no principal): RLS context set, tenant status
    enforced (a suspended tenant may only read, a cancelled one nothing), ``tenant_id`` bound to every log
    line. Commits when the block succeeds, rolls back when it raises."""
    async with db.tenant_transaction(tenant_id) as session:
        row = (await session.execute(_TENANT, {"t": tenant_id})).mappings().first()
        if row is None:
            raise Unauthorized("the credentials belong to no tenant")
        tenant = TenantContext(**row)
        ensure_access(tenant.status, write=write)
        structlog.contextvars.bind_contextvars(tenant_id=str(tenant_id))
        yield TenantScope(session=session, tenant=tenant)


async def find_api_key(db: Database, key: str) -> tuple[uuid.UUID, uuid.UUID]:
    """(tenant_id, key_id) of a valid key, through the narrow definer function."""
    prefix = tokens.api_key_prefix(key)
    if prefix is None:
        raise Unauthorized("the API key is not valid")
    async with db.transaction() as session:
        row = (await session.execute(text("SELECT * FROM auth_find_api_key(:p)"), {"p": prefix})).first()
    if row is None or not tokens.same_digest(row.key_hash, tokens.digest(key)):
        raise Unauthorized("the API key is not valid")
    return row.tenant_id, row.key_id


async def resolve(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID | None,
    api_key_id: uuid.UUID | None,
    session_id: uuid.UUID | None = None,
) -> Resolved:
    """The principal of a user's own credentials (``user_id``, with the login session ``session_id`` of an
    access token) or of an API key (``api_key_id``), read in a transaction acting for ``tenant_id``: the
    tenant, the key, the user, their roles and permissions. A tenant that no longer exists, revoked keys,
    ended sessions and deactivated users are refused."""
    row = (await session.execute(_TENANT, {"t": tenant_id})).mappings().first()
    if row is None:  # credentials for a tenant that no longer exists
        raise Unauthorized("the credentials belong to no tenant")
    tenant = TenantContext(**row)
    api_key = None
    if api_key_id is not None:
        key_row = (await session.execute(_API_KEY, {"t": tenant_id, "k": api_key_id})).first()
        if key_row is None or key_row.revoked_at is not None:
            raise Unauthorized("the API key is not valid")
        user_id = key_row.user_id
        api_key = ApiKeyContext(id=key_row.id, name=key_row.name, prefix=key_row.prefix, scopes=list(key_row.scopes))
    user_row = (await session.execute(_USER, {"t": tenant_id, "u": user_id, "sid": session_id})).mappings().first()
    if user_row is None or not user_row["is_active"]:
        raise Unauthorized("the account is deactivated or gone")
    if not user_row["session_live"]:
        raise Unauthorized("the session has ended: log in again")
    user = UserContext(**{k: v for k, v in user_row.items() if k != "session_live"})
    access = (await session.execute(_ROLES_AND_PERMISSIONS, {"t": tenant_id, "u": user.id})).one()
    permissions = effective_permissions(frozenset(access.permissions), api_key.scopes if api_key else None)
    return Resolved(tenant=tenant, user=user, roles=tuple(access.roles), permissions=permissions, api_key=api_key)


def principal_of(session: AsyncSession, resolved: Resolved, *, write: bool) -> Principal:
    """The request's principal: ``resolved`` acting in ``session`` (a transaction for its tenant), the
    tenant's status enforced (a suspended tenant may only read, a cancelled one nothing) and its id bound
    to every log line."""
    ensure_access(resolved.tenant.status, write=write)
    structlog.contextvars.bind_contextvars(tenant_id=str(resolved.tenant.id))
    return Principal(
        session=session,
        tenant=resolved.tenant,
        user=resolved.user,
        roles=list(resolved.roles),
        permissions=resolved.permissions,
        api_key=resolved.api_key,
    )
