"""Feature flag logic: evaluation for a tenant (cached briefly), tenant overrides, global flags."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import structlog
from sqlalchemy import and_, delete, event, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from castmetrics.audit import service as audit
from castmetrics.auth.principal import Actor, Principal
from castmetrics.errors import Conflict, Forbidden, NotFound
from castmetrics.flags.models import FeatureFlag, TenantFeatureFlag
from castmetrics.flags.schemas import FlagCreate, FlagUpdate

log = structlog.get_logger(__name__)

CACHE_SECONDS = 10.0
# Flags the code checks with ``ensure_enabled``: deleting one would silently switch its feature off.
GATED_FLAGS = frozenset({"custom_roles"})
# session.info keys: the tenants (None: all) whose flags this transaction changed, which it reads
# past the cache until it ends; and that the session already listens for that end.
_CHANGED = "castmetrics.flags.changed"
_LISTENING = "castmetrics.flags.listening"


class FlagCache:
    """Effective flags per tenant for ``ttl`` seconds, in this process only: a change made here is
    seen here at once (``invalidate``), other processes see it within ``ttl``."""

    def __init__(self, ttl: float, max_tenants: int = 10_000) -> None:
        self.ttl = ttl
        self.max_tenants = max_tenants
        # Bumped by every invalidation: a value read before a change committed is never stored after it.
        self.generation = 0
        self._entries: dict[uuid.UUID, tuple[float, dict[str, bool]]] = {}

    def get(self, tenant_id: uuid.UUID) -> dict[str, bool] | None:
        entry = self._entries.get(tenant_id)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, tenant_id: uuid.UUID, flags: dict[str, bool], generation: int) -> None:
        if generation != self.generation:
            return
        if tenant_id not in self._entries and len(self._entries) >= self.max_tenants:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        self._entries[tenant_id] = (time.monotonic() + self.ttl, flags)

    def invalidate(self, tenant_id: uuid.UUID | None = None) -> None:
        """Forget one tenant's flags, or every tenant's (``None``: a global flag changed)."""
        self.generation += 1
        if tenant_id is None:
            self._entries.clear()
        else:
            self._entries.pop(tenant_id, None)


cache = FlagCache(CACHE_SECONDS)


def _changed(session: AsyncSession, tenant_id: uuid.UUID | None) -> None:
    """Forget cached flags now, and again when the transaction ends: a request that read the old
    values meanwhile must not keep them."""
    cache.invalidate(tenant_id)
    session.info.setdefault(_CHANGED, set()).add(tenant_id)
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session.sync_session, "after_transaction_end", _transaction_ended)


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return  # a savepoint: the change has not committed yet
    for tenant_id in session.info.pop(_CHANGED, ()):
        cache.invalidate(tenant_id)


# --- evaluation ----------------------------------------------------------------------------------


async def effective(session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, bool]:
    """Every flag's value for the tenant: its override where it has one, else the global default."""
    uncommitted = bool(session.info.get(_CHANGED))
    cached = None if uncommitted else cache.get(tenant_id)
    if cached is not None:
        return dict(cached)
    generation = cache.generation
    rows = await session.execute(
        select(FeatureFlag.name, func.coalesce(TenantFeatureFlag.enabled, FeatureFlag.enabled))
        .outerjoin(
            TenantFeatureFlag,
            and_(TenantFeatureFlag.flag_name == FeatureFlag.name, TenantFeatureFlag.tenant_id == tenant_id),
        )
        .order_by(FeatureFlag.name)
    )
    flags = {name: bool(enabled) for name, enabled in rows}
    if not uncommitted:  # never share what this transaction may still roll back
        cache.put(tenant_id, flags, generation)
    return dict(flags)


async def is_enabled(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> bool:
    """One flag's effective value; an unknown name is a NotFound."""
    flags = await effective(session, tenant_id)
    if name not in flags:
        raise NotFound(f"no feature flag named {name!r}")
    return flags[name]


async def ensure_enabled(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> None:
    """Refuse (403, reason ``feature_disabled``) unless the flag is on for the tenant."""
    if not (await effective(session, tenant_id)).get(name, False):
        raise Forbidden(f"the {name} feature is not enabled for this tenant", reason="feature_disabled", flag=name)


# --- tenant overrides ----------------------------------------------------------------------------


async def _override(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> bool | None:
    return await session.scalar(
        select(TenantFeatureFlag.enabled).where(
            TenantFeatureFlag.tenant_id == tenant_id, TenantFeatureFlag.flag_name == name
        )
    )


async def set_override(session: AsyncSession, principal: Principal, name: str, enabled: bool) -> bool:
    """Set the tenant's own value of a flag; answers the effective value (the override)."""
    return await set_override_for(session, principal.tenant.id, principal.actor, name, enabled)


async def set_override_for(session: AsyncSession, tenant_id: uuid.UUID, actor: Actor, name: str, enabled: bool) -> bool:
    """``set_override`` for an actor that is not a request's principal (a workflow step, a job)."""
    await get_flag(session, name)
    before = await _override(session, tenant_id, name)
    await session.execute(
        insert(TenantFeatureFlag)
        .values(tenant_id=tenant_id, flag_name=name, enabled=enabled)
        .on_conflict_do_update(
            index_elements=[TenantFeatureFlag.tenant_id, TenantFeatureFlag.flag_name],
            set_={"enabled": enabled, "updated_at": func.now()},
        )
    )
    _changed(session, tenant_id)
    if before != enabled:
        await audit.record(
            session, tenant_id=tenant_id, actor=actor, action="update", entity_type="feature_flag",
            entity_id=name, before={"override": before}, after={"override": enabled},
        )  # fmt: skip
    return enabled


async def clear_override(session: AsyncSession, principal: Principal, name: str) -> None:
    """Remove the tenant's override: the global default applies again. Idempotent."""
    await get_flag(session, name)
    tenant_id = principal.tenant.id
    before = await session.scalar(
        delete(TenantFeatureFlag)
        .where(TenantFeatureFlag.tenant_id == tenant_id, TenantFeatureFlag.flag_name == name)
        .returning(TenantFeatureFlag.enabled)
    )
    if before is None:
        return
    _changed(session, tenant_id)
    await audit.record(
        session, tenant_id=tenant_id, actor=principal.actor, action="delete", entity_type="feature_flag",
        entity_id=name, before={"override": before}, after={"override": None},
    )  # fmt: skip


# --- global flags (the platform admin, on the owner's connection) ---------------------------------


def _snapshot(flag: FeatureFlag) -> dict[str, object]:
    return {"description": flag.description, "enabled": flag.enabled}


async def list_flags(session: AsyncSession) -> Sequence[FeatureFlag]:
    return (await session.scalars(select(FeatureFlag).order_by(FeatureFlag.name))).all()


async def get_flag(session: AsyncSession, name: str) -> FeatureFlag:
    flag = await session.get(FeatureFlag, name)
    if flag is None:
        raise NotFound(f"no feature flag named {name!r}")
    return flag


async def create_flag(session: AsyncSession, data: FlagCreate, actor: Actor) -> FeatureFlag:
    """A new flag with its global default. Global flags have no tenant, so the change is logged,
    not audited in a tenant."""
    flag = FeatureFlag(name=data.name, description=data.description, enabled=data.enabled)
    session.add(flag)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a feature flag named {data.name!r} already exists", field="name") from exc
    await session.refresh(flag)
    _changed(session, None)
    log.info("flags.created", flag=flag.name, after=_snapshot(flag), actor_type=actor.type, actor_id=actor.id)
    return flag


async def update_flag(session: AsyncSession, name: str, data: FlagUpdate, actor: Actor) -> FeatureFlag:
    flag = await get_flag(session, name)
    before = _snapshot(flag)
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(flag, field, value)
    await session.flush()
    await session.refresh(flag)
    _changed(session, None)
    log.info("flags.updated", flag=name, before=before, after=_snapshot(flag), actor_type=actor.type, actor_id=actor.id)
    return flag


async def delete_flag(session: AsyncSession, name: str, actor: Actor) -> None:
    """Delete a flag and every tenant's override of it. Flags the code checks cannot be deleted."""
    flag = await get_flag(session, name)
    if name in GATED_FLAGS:
        raise Conflict(f"the code checks the {name} flag: switch it off instead of deleting it")
    overrides = await session.scalar(
        select(func.count()).select_from(TenantFeatureFlag).where(TenantFeatureFlag.flag_name == name)
    )
    await session.delete(flag)
    await session.flush()
    _changed(session, None)
    log.info(
        "flags.deleted", flag=name, before=_snapshot(flag), overrides_removed=int(overrides or 0),
        actor_type=actor.type, actor_id=actor.id,
    )  # fmt: skip
