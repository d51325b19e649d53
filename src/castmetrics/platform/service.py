"""Platform admin logic: administrators, their login and tokens, and their decisions on tenants.

Everything here runs on the owner's connection (``app.state.admin_db``): the runtime role can
neither read ``platform_admins`` nor see past one tenant.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.auth import tokens
from castmetrics.auth.principal import Actor
from castmetrics.changes import record_change
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.errors import Conflict, Unauthorized
from castmetrics.identity import passwords, throttle
from castmetrics.platform.models import PlatformAdmin
from castmetrics.platform.schemas import AdminTenantUpdate, AdminToken
from castmetrics.tenancy import service as tenancy
from castmetrics.tenancy.models import Tenant

log = structlog.get_logger(__name__)

# The purpose its tokens are signed for: a tenant's access token never verifies as one, nor the reverse.
TOKEN_PURPOSE = "platform"


@dataclass
class PlatformPrincipal:
    """A logged-in platform administrator and the owner transaction the request acts in."""

    session: AsyncSession
    admin: PlatformAdmin

    @property
    def actor(self) -> Actor:
        return Actor("platform_admin", str(self.admin.id))


# --- administrators ------------------------------------------------------------------------------


async def create_admin(
    session: AsyncSession, settings: Settings, *, email: str, name: str, password: str
) -> PlatformAdmin:
    """A platform administrator (``castmetrics admin create``); checks the password policy."""
    passwords.check_policy(password, email=email, name=name)
    password_hash = await passwords.hash_password(password, settings.bcrypt_rounds)
    admin = PlatformAdmin(email=email, name=name, password_hash=password_hash)
    session.add(admin)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"the email {email!r} is already a platform administrator", field="email") from exc
    await session.refresh(admin)
    log.info("platform.admin_created", admin_id=str(admin.id))
    return admin


async def login(db: Database, settings: Settings, email: str, password: str, client_addr: str | None) -> AdminToken:
    """Password login for administrators, throttled exactly like tenant users' login."""
    keys = throttle.keys_for(email, client_addr, realm="platform")
    async with db.transaction() as session:
        delay = await throttle.attempt(session, keys)
        admin = await session.scalar(select(PlatformAdmin).where(func.lower(PlatformAdmin.email) == email.lower()))
    # With no such admin this still spends a bcrypt check: the timing does not tell who exists.
    await asyncio.sleep(delay)
    ok = await passwords.verify_password(password, admin.password_hash if admin else None)
    if admin is None or not ok:
        log.info("platform.login_failed")
        raise Unauthorized("the email or password is wrong")
    async with db.transaction() as session:
        await throttle.record_success(session, keys)
        found = await session.get(PlatformAdmin, admin.id)
        if found is not None:
            found.last_login_at = datetime.now(UTC)
    log.info("platform.admin_login", admin_id=str(admin.id))
    lifetime = timedelta(minutes=settings.access_token_minutes)
    token = tokens.sign(
        settings.secret_key.get_secret_value(),
        TOKEN_PURPOSE,
        {"sub": str(admin.id), "jti": secrets.token_hex(8)},
        lifetime,
    )
    return AdminToken(access_token=token, expires_in=int(lifetime.total_seconds()))


async def admin_for_token(session: AsyncSession, settings: Settings, token: str) -> PlatformAdmin:
    """The administrator a platform token was issued to; 401 for any other token or a removed admin."""
    claims = tokens.verify(settings.secret_key.get_secret_value(), TOKEN_PURPOSE, token)
    try:
        admin_id = uuid.UUID(str(claims["sub"]))
    except (KeyError, ValueError) as exc:
        raise Unauthorized("the platform token is not valid") from exc
    admin = await session.get(PlatformAdmin, admin_id)
    if admin is None:
        raise Unauthorized("the platform administrator no longer exists")
    return admin


# --- tenants -------------------------------------------------------------------------------------


async def update_tenant(
    session: AsyncSession, principal: PlatformPrincipal, tenant: Tenant, data: AdminTenantUpdate
) -> Tenant:
    """The operator's decisions on a tenant: its status and its tier, each audited in the tenant."""
    if data.status is not None:
        tenant = await tenancy.set_status(session, tenant, data.status, principal.actor)
    if data.subscription_tier is not None and data.subscription_tier != tenant.subscription_tier:
        before = tenancy.snapshot(tenant)
        tenant.subscription_tier = data.subscription_tier
        await session.flush()
        await session.refresh(tenant)
        await record_change(
            session, tenant_id=tenant.id, actor=principal.actor, action="update", entity_type="tenant",
            entity_id=tenant.id, before=before, after=tenancy.snapshot(tenant), event_type="tenant.tier_changed",
            payload={"from": before["subscription_tier"], "to": tenant.subscription_tier},
        )  # fmt: skip
    return tenant
