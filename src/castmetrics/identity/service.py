"""Identity logic: tenants' first users, login and tokens, users, roles, API keys, permissions."""

from __future__ import annotations

import asyncio
import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit import service as audit
from castmetrics.auth import tokens
from castmetrics.auth.principal import Actor, Principal, UserRef
from castmetrics.auth.usage import Counts, UsageMeter
from castmetrics.changes import record_change
from castmetrics.config import Settings
from castmetrics.db.repository import Repository
from castmetrics.db.session import Database, own_rows
from castmetrics.errors import Conflict, Forbidden, Invalid, RateLimited, Unauthorized
from castmetrics.identity import passwords, throttle
from castmetrics.identity.models import ApiKey, Permission, RefreshToken, Role, RolePermission, User, UserRole
from castmetrics.identity.permissions import DEFAULT_ROLES
from castmetrics.identity.schemas import (
    ApiKeyIn,
    InviteIn,
    RoleIn,
    RoleUpdate,
    SignupIn,
    TokenPair,
    UserMetric,
    UserUpdate,
)
from castmetrics.mail import service as mail
from castmetrics.quotas import service as quotas
from castmetrics.tenancy import service as tenancy
from castmetrics.tenancy.models import Tenant
from castmetrics.tenancy.schemas import TenantCreate

log = structlog.get_logger(__name__)

VERIFY_LIFETIME = timedelta(days=7)
RESET_LIFETIME = timedelta(hours=1)
INVITE_LIFETIME = timedelta(days=7)
# At most this many verification (sign-up's included) or password-reset emails to one address in
# ADDRESS_MAIL_WINDOW: a reset needs only an address, so without a limit anyone could flood a mailbox
# through our server. Past it a resend answers 429; a reset is silently not sent (no enumeration).
ADDRESS_MAILS = 3
ADDRESS_MAIL_WINDOW = timedelta(hours=1)

_users = Repository(User, moment=User.created_at)
_roles = Repository(Role, moment=Role.created_at)
_api_keys = Repository(ApiKey, moment=ApiKey.created_at)


# --- tenants and their roles ---------------------------------------------------------------------


async def seed_default_roles(session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, Role]:
    """Give a new tenant the five default roles (owner, admin, sales, analyst, viewer)."""
    roles: dict[str, Role] = {}
    for name, (description, _) in DEFAULT_ROLES.items():
        role = Role(tenant_id=tenant_id, id=uuid.uuid4(), name=name, description=description, is_system=True)
        session.add(role)
        roles[name] = role
    await session.flush()
    session.add_all(
        RolePermission(tenant_id=tenant_id, role_id=roles[name].id, permission=permission)
        for name, (_, permissions) in DEFAULT_ROLES.items()
        for permission in sorted(permissions)
    )
    await session.flush()
    return roles


async def provision_tenant(
    session: AsyncSession, data: TenantCreate, actor: Actor, tenant_id: uuid.UUID | None = None
) -> Tenant:
    """A tenant with its default roles, in the caller's transaction."""
    tenant = await tenancy.create(session, data, actor, tenant_id=tenant_id)
    await seed_default_roles(session, tenant.id)
    return tenant


async def role_by_name(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> Role:
    # Filtered by tenant as well as by RLS: the owner's connection (CLI) bypasses RLS.
    return await _roles.get_by(
        session, Role.tenant_id == tenant_id, func.lower(Role.name) == name.lower(), missing=f"no role named {name!r}"
    )


# --- users ---------------------------------------------------------------------------------------


async def _add_user(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    email: str,
    name: str,
    password_hash: str | None,
    email_verified: bool = False,
) -> User:
    user = User(
        tenant_id=tenant_id,
        id=uuid.uuid4(),
        email=email,
        name=name,
        password_hash=password_hash,
        email_verified=email_verified,
    )
    # An email is one user's across every tenant: claimed in the platform table (migration 0024).
    claimed = await session.execute(
        text("SELECT platform_claim_email(:email, :t, :u)"), {"email": email, "t": tenant_id, "u": user.id}
    )
    if not claimed.scalar():
        raise Conflict(f"the email {email!r} is already in use", field="email")
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def create_user(
    session: AsyncSession,
    settings: Settings,
    tenant_id: uuid.UUID,
    *,
    email: str,
    name: str,
    password: str,
    role_names: Sequence[str],
    actor: Actor,
    email_verified: bool = False,
) -> User:
    """A user with a password (sign-up, demo, CLI); checks the password policy."""
    passwords.check_policy(password, email=email, name=name)
    user = await _add_user(
        session,
        tenant_id,
        email=email,
        name=name,
        password_hash=await passwords.hash_password(password, settings.bcrypt_rounds),
        email_verified=email_verified,
    )
    for role_name in role_names:
        role = await role_by_name(session, tenant_id, role_name)
        session.add(UserRole(tenant_id=tenant_id, user_id=user.id, role_id=role.id))
    await session.flush()
    await record_change(
        session, tenant_id=tenant_id, actor=actor, action="create", entity_type="user", entity_id=user.id,
        after={"email": user.email, "name": user.name, "roles": sorted(role_names)},
        event_type="user.created", payload={"user_id": str(user.id)},
    )  # fmt: skip
    return user


async def roles_of(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    result = await session.scalars(
        select(Role.name)
        .join(UserRole, (UserRole.tenant_id == Role.tenant_id) & (UserRole.role_id == Role.id))
        .where(UserRole.user_id == user_id)
        .order_by(Role.name)
    )
    return list(result)


async def roles_for_users(session: AsyncSession, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    rows = await session.execute(
        select(UserRole.user_id, Role.name)
        .join(Role, (Role.tenant_id == UserRole.tenant_id) & (Role.id == UserRole.role_id))
        .where(UserRole.user_id.in_(set(user_ids)))
        .order_by(Role.name)
    )
    found: dict[uuid.UUID, list[str]] = {user_id: [] for user_id in user_ids}
    for user_id, name in rows:
        found[user_id].append(name)
    return found


async def permissions_of(session: AsyncSession, user_id: uuid.UUID) -> frozenset[str]:
    """The union of the permissions of the user's roles."""
    result = await session.scalars(
        select(RolePermission.permission)
        .join(
            UserRole,
            (UserRole.tenant_id == RolePermission.tenant_id) & (UserRole.role_id == RolePermission.role_id),
        )
        .where(UserRole.user_id == user_id)
        .distinct()
    )
    return frozenset(result)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    return await _users.get(session, user_id, missing="no such user")


async def list_users(session: AsyncSession, *, limit: int, cursor: str | None) -> tuple[Sequence[User], str | None]:
    return await _users.page(session, limit=limit, cursor=cursor)


def _fingerprint(password_hash: str | None) -> str:
    # Part of reset tokens: once the password changes the token no longer matches (single use).
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def _link(settings: Settings, path: str, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}{path}?token={token}"


async def send_verification(session: AsyncSession, settings: Settings, user: UserRef) -> None:
    token = tokens.sign(
        settings.secret_key.get_secret_value(),
        "verify",
        {"sub": str(user.id), "tid": str(user.tenant_id), "email": user.email},
        VERIFY_LIFETIME,
    )
    await mail.queue(
        session, settings, tenant_id=user.tenant_id, kind="verify_email", to=user.email,
        subject="Confirm your email address for Castmetrics",
        body=f"Hello {user.name},\n\nconfirm your email address by opening this link:\n\n"
        f"{_link(settings, '/verify-email', token)}\n\nThe link is valid for 7 days.\n",
    )  # fmt: skip


async def _invite_email(session: AsyncSession, settings: Settings, user: UserRef, inviter: UserRef) -> None:
    token = tokens.sign(
        settings.secret_key.get_secret_value(),
        "invite",
        {"sub": str(user.id), "tid": str(user.tenant_id)},
        INVITE_LIFETIME,
    )
    await mail.queue(
        session, settings, tenant_id=user.tenant_id, kind="invite", to=user.email,
        subject=f"{inviter.name} invited you to Castmetrics",
        body=f"Hello {user.name},\n\n{inviter.name} invited you to their team on Castmetrics. Choose a "
        f"password to join:\n\n{_link(settings, '/accept-invite', token)}\n\nThe link is valid for 7 days.\n",
    )  # fmt: skip


# --- sign-up, login, tokens ----------------------------------------------------------------------


async def _issue_tokens(
    session: AsyncSession, settings: Settings, user: User, family_id: uuid.UUID | None = None
) -> TokenPair:
    token_id = uuid.uuid4()
    family_id = family_id or uuid.uuid4()
    refresh, secret_part = tokens.new_refresh_token(user.tenant_id, token_id)
    session.add(
        RefreshToken(
            tenant_id=user.tenant_id,
            id=token_id,
            user_id=user.id,
            family_id=family_id,
            token_hash=tokens.digest(secret_part),
            expires_at=datetime.now(UTC) + timedelta(days=settings.refresh_token_days),
        )
    )
    await session.flush()
    access = tokens.issue_access_token(
        settings.secret_key.get_secret_value(), user.tenant_id, user.id, settings.access_token_minutes, family_id
    )
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=settings.access_token_minutes * 60)


async def signup(db: Database, settings: Settings, data: SignupIn) -> tuple[Tenant, User, TokenPair]:
    """A new tenant (free tier), its owner and a session, in one transaction as the runtime role:
    the transaction acts for the tenant it is creating, so RLS admits exactly that tenant's rows."""
    passwords.check_policy(data.password, email=data.email, name=data.name)
    tenant_id = uuid.uuid4()
    async with db.tenant_transaction(tenant_id) as session:
        actor = Actor("user", None)
        tenant = await provision_tenant(
            session, TenantCreate(name=data.tenant_name, slug=data.tenant_slug), actor, tenant_id=tenant_id
        )
        user = await create_user(
            session, settings, tenant_id, email=data.email, name=data.name, password=data.password,
            role_names=["owner"], actor=actor,
        )  # fmt: skip
        await send_verification(session, settings, user)
        pair = await _issue_tokens(session, settings, user)
        user.last_login_at = datetime.now(UTC)
        return tenant, user, pair


async def login(
    db: Database, settings: Settings, email: str, password: str, client_addr: str | None, *, meter: UsageMeter
) -> TokenPair:
    """Password login. Failures are counted per email and per address: slowed, then refused (429). A login
    is counted in ``meter`` (written to ``user_metrics`` with the API calls)."""
    keys = throttle.keys_for(email, client_addr, realm="user")
    async with db.transaction() as session:
        delay = await throttle.attempt(session, keys)
        found = (await session.execute(text("SELECT * FROM auth_find_user(:email)"), {"email": email})).first()
    await asyncio.sleep(delay)
    ok = await passwords.verify_password(password, found.password_hash if found else None)
    if not ok or found is None or not found.is_active:
        raise Unauthorized("the email or password is wrong")
    async with db.transaction() as session:
        await throttle.record_success(session, keys)
    async with db.tenant_transaction(found.tenant_id) as session:
        tenant = await tenancy.get(session, found.tenant_id)
        tenancy.ensure_access(tenant, write=False)
        user = await get_user(session, found.user_id)
        user.last_login_at = datetime.now(UTC)
        pair = await _issue_tokens(session, settings, user)
    meter.count(user.tenant_id, user.id, logins=1)
    return pair


async def user_metrics(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    first_day: date,
    last_day: date,
    pending: Mapping[date, Counts],
) -> list[UserMetric]:
    """Daily logins and API calls of one user, every day of the range present (zeros filled): what is stored
    plus what this process counted and has not written yet (``pending``, ``UsageMeter.pending``). The
    tenant is named, not left to row-level security alone: on Citus a join without the distribution column
    would not be routed to the tenant's shard."""
    rows = await session.execute(
        text(
            """
            SELECT d::date AS day, coalesce(m.logins, 0) AS logins, coalesce(m.api_calls, 0) AS api_calls
            FROM generate_series(CAST(:first AS date), CAST(:last AS date), interval '1 day') AS d
            LEFT JOIN user_metrics m ON m.tenant_id = :t AND m.user_id = :user_id AND m.day = d::date
            ORDER BY d
            """
        ),
        {"first": first_day, "last": last_day, "user_id": user_id, "t": tenant_id},
    )
    zero = Counts()
    return [
        UserMetric(
            day=r.day,
            logins=r.logins + pending.get(r.day, zero).logins,
            api_calls=r.api_calls + pending.get(r.day, zero).api_calls,
        )
        for r in rows
    ]


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


async def refresh(db: Database, settings: Settings, token: str) -> TokenPair:
    """Rotate a refresh token. Presenting one that was already rotated (a stolen copy, or the real
    client after theft) revokes its whole family: both parties must log in again."""
    parts = tokens.parse_refresh_token(token)
    reused = False
    async with db.tenant_transaction(parts.tenant_id) as session:
        row = await session.scalar(
            select(RefreshToken)
            .where(RefreshToken.tenant_id == parts.tenant_id, RefreshToken.id == parts.token_id)
            .with_for_update()
        )
        if row is None or not tokens.same_digest(row.token_hash, tokens.digest(parts.secret)):
            raise Unauthorized("the refresh token is not valid")
        if row.revoked_at is not None:
            raise Unauthorized("the refresh token was revoked")
        if row.rotated_at is not None:
            await _revoke_family(session, row.family_id)
            reused = True
        elif row.expires_at <= datetime.now(UTC):
            raise Unauthorized("the refresh token has expired")
        else:
            user = await get_user(session, row.user_id)
            tenant = await tenancy.get(session, row.tenant_id)
            if not user.is_active:
                raise Unauthorized("the account is deactivated")
            tenancy.ensure_access(tenant, write=False)
            row.rotated_at = datetime.now(UTC)
            return await _issue_tokens(session, settings, user, family_id=row.family_id)
    assert reused  # the family's revocation is committed before the refusal
    raise Unauthorized("the refresh token was already used: every session of this login is revoked")


async def logout(db: Database, token: str) -> None:
    """Revoke the refresh token's family. Unknown tokens are ignored (logout is idempotent)."""
    try:
        parts = tokens.parse_refresh_token(token)
    except Unauthorized:
        return
    async with db.tenant_transaction(parts.tenant_id) as session:
        row = await session.scalar(select(RefreshToken).where(RefreshToken.id == parts.token_id))
        if row is not None and tokens.same_digest(row.token_hash, tokens.digest(parts.secret)):
            await _revoke_family(session, row.family_id)


async def verify_email(db: Database, settings: Settings, token: str) -> User:
    claims = tokens.verify(settings.secret_key.get_secret_value(), "verify", token)
    async with db.tenant_transaction(claims["tid"]) as session:
        user = await get_user(session, uuid.UUID(claims["sub"]))
        if user.email.casefold() != str(claims.get("email", "")).casefold():
            raise Unauthorized("the verify token is for another email address")
        if not user.email_verified:
            user.email_verified = True
            await audit.record(
                session, tenant_id=user.tenant_id, actor=Actor("user", str(user.id)), action="update",
                entity_type="user", entity_id=user.id, before={"email_verified": False},
                after={"email_verified": True},
            )  # fmt: skip
        return user


async def resend_verification(session: AsyncSession, settings: Settings, user: UserRef) -> None:
    """Send the verification link again: 409 when already verified, 429 past ``ADDRESS_MAILS`` an hour."""
    if user.email_verified:
        raise Conflict("the email address is already verified")
    sent = await mail.recent(session, kind="verify_email", to=user.email, within=ADDRESS_MAIL_WINDOW)
    if sent.count >= ADDRESS_MAILS:
        wait = (sent.frees_at - datetime.now(UTC)).total_seconds() if sent.frees_at else 60
        raise RateLimited(
            f"{sent.count} verification emails were sent to this address in the last hour: try again later",
            retry_after=max(1, math.ceil(wait)),
        )
    await send_verification(session, settings, user)


async def request_password_reset(db: Database, settings: Settings, email: str) -> None:
    """Email a reset link if an active account has this address; silent otherwise (no enumeration)."""
    async with db.transaction() as session:
        found = (await session.execute(text("SELECT * FROM auth_find_user(:email)"), {"email": email})).first()
    if found is None or not found.is_active:
        return
    async with db.tenant_transaction(found.tenant_id) as session:
        user = await get_user(session, found.user_id)
        sent = await mail.recent(session, kind="password_reset", to=user.email, within=ADDRESS_MAIL_WINDOW)
        if sent.count >= ADDRESS_MAILS:
            log.info("identity.password_reset_throttled", user_id=str(user.id))
            return
        token = tokens.sign(
            settings.secret_key.get_secret_value(),
            "reset",
            {"sub": str(user.id), "tid": str(user.tenant_id), "pwv": _fingerprint(user.password_hash)},
            RESET_LIFETIME,
        )
        await mail.queue(
            session, settings, tenant_id=user.tenant_id, kind="password_reset", to=user.email,
            subject="Reset your Castmetrics password",
            body=f"Hello {user.name},\n\nchoose a new password by opening this link:\n\n"
            f"{_link(settings, '/reset-password', token)}\n\nThe link is valid for one hour. If you did "
            "not ask for it, ignore this message.\n",
        )  # fmt: skip


async def _set_password(session: AsyncSession, settings: Settings, user: User, password: str) -> None:
    passwords.check_policy(password, email=user.email, name=user.name)
    user.password_hash = await passwords.hash_password(password, settings.bcrypt_rounds)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    await audit.record(
        session, tenant_id=user.tenant_id, actor=Actor("user", str(user.id)), action="update",
        entity_type="user", entity_id=user.id, before={"password": "old"}, after={"password": "new"},
    )  # fmt: skip


async def _user_for_update(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user's row, locked until the transaction ends: a single-use token (reset, invite) presented twice
    at once is checked by the second only after the first has committed, and then refused."""
    user = await session.scalar(
        select(User).where(*own_rows(session, User.tenant_id), User.id == user_id).with_for_update()
    )
    if user is None:
        raise Unauthorized("the token's account is gone")
    return user


async def reset_password(db: Database, settings: Settings, token: str, password: str) -> None:
    claims = tokens.verify(settings.secret_key.get_secret_value(), "reset", token)
    async with db.tenant_transaction(claims["tid"]) as session:
        user = await _user_for_update(session, uuid.UUID(claims["sub"]))
        if claims.get("pwv") != _fingerprint(user.password_hash) or not user.is_active:
            raise Unauthorized("the reset token was already used")
        await _set_password(session, settings, user, password)


async def accept_invite(db: Database, settings: Settings, token: str, password: str) -> TokenPair:
    claims = tokens.verify(settings.secret_key.get_secret_value(), "invite", token)
    async with db.tenant_transaction(claims["tid"]) as session:
        user = await _user_for_update(session, uuid.UUID(claims["sub"]))
        if user.password_hash is not None or not user.is_active:
            raise Unauthorized("the invitation was already accepted")
        await _set_password(session, settings, user, password)
        user.email_verified = True  # the link arrived at this address
        user.last_login_at = datetime.now(UTC)
        return await _issue_tokens(session, settings, user)


# --- users admin ---------------------------------------------------------------------------------


def _ensure_grantable(principal: Principal, permissions: frozenset[str]) -> None:
    """Nobody hands out more than they hold: assigning or defining a role needs all its permissions."""
    missing = sorted(permissions - principal.permissions)
    if missing:
        raise Forbidden(
            "you cannot grant permissions you do not hold yourself",
            reason="permission_escalation",
            missing=missing,
        )


async def _roles_by_ids(session: AsyncSession, role_ids: Sequence[uuid.UUID]) -> list[Role]:
    roles = list((await session.scalars(select(Role).where(Role.id.in_(set(role_ids))))).all())
    if len(roles) != len(set(role_ids)):
        raise Invalid("one or more roles do not exist", field="role_ids")
    return roles


async def _permissions_of_roles(session: AsyncSession, role_ids: Sequence[uuid.UUID]) -> frozenset[str]:
    result = await session.scalars(select(RolePermission.permission).where(RolePermission.role_id.in_(set(role_ids))))
    return frozenset(result)


async def invite_user(session: AsyncSession, settings: Settings, principal: Principal, data: InviteIn) -> User:
    """Create a user without a password and email them a link to choose one (within the users quota)."""
    await quotas.ensure_room(session, principal.tenant, "users")
    roles = await _roles_by_ids(session, data.role_ids)
    _ensure_grantable(principal, await _permissions_of_roles(session, data.role_ids))
    user = await _add_user(session, principal.tenant.id, email=str(data.email), name=data.name, password_hash=None)
    session.add_all(UserRole(tenant_id=user.tenant_id, user_id=user.id, role_id=r.id) for r in roles)
    await session.flush()
    await record_change(
        session, tenant_id=user.tenant_id, actor=principal.actor, action="create", entity_type="user",
        entity_id=user.id, after={"email": user.email, "name": user.name, "roles": sorted(r.name for r in roles)},
        event_type="user.invited", payload={"user_id": str(user.id)},
    )  # fmt: skip
    await _invite_email(session, settings, user, principal.user)
    return user


async def _owners_left(session: AsyncSession, tenant_id: uuid.UUID, excluding: uuid.UUID) -> int:
    owner = await role_by_name(session, tenant_id, "owner")
    # The owner role's row lock serialises every change that could remove an owner, until this transaction
    # ends: two owners demoting each other at once are counted one after the other, so one is refused.
    await session.execute(select(Role.id).where(Role.tenant_id == tenant_id, Role.id == owner.id).with_for_update())
    count = await session.scalar(
        select(func.count())
        .select_from(UserRole)
        .join(User, (User.tenant_id == UserRole.tenant_id) & (User.id == UserRole.user_id))
        .where(UserRole.role_id == owner.id, User.is_active.is_(True), User.id != excluding)
    )
    return int(count or 0)


async def _ensure_not_last_owner(session: AsyncSession, user: User) -> None:
    if "owner" in await roles_of(session, user.id) and await _owners_left(session, user.tenant_id, user.id) == 0:
        raise Conflict("a tenant keeps at least one active owner")


async def update_user(session: AsyncSession, principal: Principal, user: User, data: UserUpdate) -> User:
    before = {"name": user.name, "is_active": user.is_active}
    if data.name is not None:
        user.name = data.name
    if data.is_active is not None and data.is_active != user.is_active:
        if not data.is_active:
            await _deactivation_checks(session, principal, user)
        user.is_active = data.is_active
    await session.flush()
    await audit.record(
        session, tenant_id=user.tenant_id, actor=principal.actor, action="update", entity_type="user",
        entity_id=user.id, before=before, after={"name": user.name, "is_active": user.is_active},
    )  # fmt: skip
    return user


async def _deactivation_checks(session: AsyncSession, principal: Principal, user: User) -> None:
    if user.id == principal.user.id:
        raise Conflict("you cannot deactivate yourself")
    # Nobody locks out a user who holds permissions they lack (an admin cannot remove an owner).
    _ensure_grantable(principal, await permissions_of(session, user.id))
    await _ensure_not_last_owner(session, user)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


async def deactivate_user(session: AsyncSession, principal: Principal, user: User) -> None:
    if user.is_active:
        await update_user(session, principal, user, UserUpdate(is_active=False))


async def set_user_roles(
    session: AsyncSession, principal: Principal, user: User, role_ids: Sequence[uuid.UUID]
) -> list[str]:
    roles = await _roles_by_ids(session, role_ids)
    before = await roles_of(session, user.id)
    current_ids = set((await session.scalars(select(UserRole.role_id).where(UserRole.user_id == user.id))).all())
    changed = current_ids.symmetric_difference(set(role_ids))
    _ensure_grantable(principal, await _permissions_of_roles(session, list(changed)))
    if "owner" in before and "owner" not in {r.name for r in roles}:
        await _ensure_not_last_owner(session, user)
    await session.execute(delete(UserRole).where(UserRole.user_id == user.id))
    session.add_all(UserRole(tenant_id=user.tenant_id, user_id=user.id, role_id=r.id) for r in roles)
    await session.flush()
    after = sorted(r.name for r in roles)
    await audit.record(
        session, tenant_id=user.tenant_id, actor=principal.actor, action="update", entity_type="user",
        entity_id=user.id, before={"roles": before}, after={"roles": after},
    )  # fmt: skip
    return after


# --- roles ---------------------------------------------------------------------------------------


async def role_permissions(session: AsyncSession, role_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    rows = await session.execute(
        select(RolePermission.role_id, RolePermission.permission)
        .where(RolePermission.role_id.in_(set(role_ids)))
        .order_by(RolePermission.permission)
    )
    found: dict[uuid.UUID, list[str]] = {role_id: [] for role_id in role_ids}
    for role_id, permission in rows:
        found[role_id].append(permission)
    return found


async def list_roles(session: AsyncSession, *, limit: int, cursor: str | None) -> tuple[Sequence[Role], str | None]:
    return await _roles.page(session, limit=limit, cursor=cursor)


async def get_role(session: AsyncSession, role_id: uuid.UUID) -> Role:
    return await _roles.get(session, role_id, missing="no such role")


async def _check_permission_names(session: AsyncSession, names: Sequence[str]) -> frozenset[str]:
    wanted = frozenset(names)
    known = frozenset((await session.scalars(select(Permission.name).where(Permission.name.in_(wanted)))).all())
    unknown = sorted(wanted - known)
    if unknown:
        raise Invalid(f"unknown permissions: {', '.join(unknown)}", field="permissions")
    return wanted


async def _flush_role(session: AsyncSession, role: Role) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a role named {role.name!r} already exists", field="name") from exc


async def create_role(session: AsyncSession, principal: Principal, data: RoleIn) -> Role:
    permissions = await _check_permission_names(session, data.permissions)
    _ensure_grantable(principal, permissions)
    role = Role(tenant_id=principal.tenant.id, id=uuid.uuid4(), name=data.name, description=data.description)
    session.add(role)
    await _flush_role(session, role)
    session.add_all(
        RolePermission(tenant_id=role.tenant_id, role_id=role.id, permission=p) for p in sorted(permissions)
    )
    await session.flush()
    await session.refresh(role)
    await audit.record(
        session, tenant_id=role.tenant_id, actor=principal.actor, action="create", entity_type="role",
        entity_id=role.id, after={"name": role.name, "permissions": sorted(permissions)},
    )  # fmt: skip
    return role


async def update_role(session: AsyncSession, principal: Principal, role: Role, data: RoleUpdate) -> Role:
    if role.is_system:
        raise Conflict("default roles cannot be changed; create a role of your own instead")
    before_permissions = (await role_permissions(session, [role.id]))[role.id]
    before = {"name": role.name, "description": role.description, "permissions": before_permissions}
    if data.name is not None:
        role.name = data.name
    if data.description is not None:
        role.description = data.description
    await _flush_role(session, role)
    if data.permissions is not None:
        permissions = await _check_permission_names(session, data.permissions)
        _ensure_grantable(principal, permissions.symmetric_difference(before_permissions))
        await session.execute(delete(RolePermission).where(RolePermission.role_id == role.id))
        session.add_all(
            RolePermission(tenant_id=role.tenant_id, role_id=role.id, permission=p) for p in sorted(permissions)
        )
        await session.flush()
    after_permissions = (await role_permissions(session, [role.id]))[role.id]
    await audit.record(
        session, tenant_id=role.tenant_id, actor=principal.actor, action="update", entity_type="role",
        entity_id=role.id, before=before,
        after={"name": role.name, "description": role.description, "permissions": after_permissions},
    )  # fmt: skip
    return role


async def delete_role(session: AsyncSession, principal: Principal, role: Role) -> None:
    if role.is_system:
        raise Conflict("default roles cannot be deleted")
    await session.delete(role)
    await session.flush()
    await audit.record(
        session, tenant_id=role.tenant_id, actor=principal.actor, action="delete", entity_type="role",
        entity_id=role.id, before={"name": role.name},
    )  # fmt: skip


async def list_permissions(session: AsyncSession) -> Sequence[Permission]:
    return (await session.scalars(select(Permission).order_by(Permission.resource, Permission.action))).all()


# --- API keys ------------------------------------------------------------------------------------


async def create_api_key(session: AsyncSession, principal: Principal, data: ApiKeyIn) -> tuple[ApiKey, str]:
    """A new key for the acting user; the full key is answered once and only its hash is stored."""
    if principal.api_key is not None:
        raise Forbidden("API keys cannot create API keys", reason="api_key_cannot_create_keys")
    while True:  # a prefix finds its key across every tenant (40 random bits: a clash is rare, not impossible)
        key, prefix = tokens.new_api_key()
        key_id = uuid.uuid4()
        claimed = await session.execute(
            text("SELECT platform_claim_api_key_prefix(:p, :t, :k)"),
            {"p": prefix, "t": principal.tenant.id, "k": key_id},
        )
        if claimed.scalar():
            break
    api_key = ApiKey(
        tenant_id=principal.tenant.id,
        id=key_id,
        user_id=principal.user.id,
        name=data.name,
        prefix=prefix,
        key_hash=tokens.digest(key),
        scopes=sorted(set(data.scopes)),
    )
    session.add(api_key)
    await session.flush()
    await session.refresh(api_key)
    await audit.record(
        session, tenant_id=api_key.tenant_id, actor=principal.actor, action="create", entity_type="api_key",
        entity_id=api_key.id, after={"name": api_key.name, "prefix": prefix, "scopes": api_key.scopes},
    )  # fmt: skip
    return api_key, key


async def list_api_keys(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[Sequence[ApiKey], str | None]:
    return await _api_keys.page(session, limit=limit, cursor=cursor)


async def get_api_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    return await _api_keys.get(session, key_id, missing="no such API key")


async def rename_api_key(session: AsyncSession, principal: Principal, api_key: ApiKey, name: str) -> ApiKey:
    before = api_key.name
    api_key.name = name
    await session.flush()
    await audit.record(
        session, tenant_id=api_key.tenant_id, actor=principal.actor, action="update", entity_type="api_key",
        entity_id=api_key.id, before={"name": before}, after={"name": name},
    )  # fmt: skip
    return api_key


async def revoke_api_key(session: AsyncSession, principal: Principal, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = datetime.now(UTC)
        await session.flush()
        await audit.record(
            session, tenant_id=api_key.tenant_id, actor=principal.actor, action="delete",
            entity_type="api_key", entity_id=api_key.id, before={"name": api_key.name, "revoked": False},
            after={"revoked": True},
        )  # fmt: skip
