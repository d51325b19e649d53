"""Flag evaluation: global default, tenant override, the in-process cache and its invalidation."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import text

from castmetrics.auth.principal import Actor
from castmetrics.db.session import Database
from castmetrics.errors import Conflict, Forbidden, NotFound
from castmetrics.flags import service as flags
from castmetrics.flags.schemas import FlagCreate, FlagUpdate

OPERATOR = Actor("platform_admin", "tests")


async def _effective(db: Database, tenant_id: uuid.UUID) -> dict[str, bool]:
    async with db.tenant_transaction(tenant_id) as session:
        return await flags.effective(session, tenant_id)


async def _override(db: Database, tenant_id: uuid.UUID, name: str, enabled: bool) -> None:
    """An override written straight into the table, past the service (and its cache invalidation)."""
    async with db.tenant_transaction(tenant_id) as session:
        await session.execute(
            text("INSERT INTO tenant_feature_flags (tenant_id, flag_name, enabled) VALUES (:t, :n, :e)"),
            {"t": tenant_id, "n": name, "e": enabled},
        )


async def test_override_wins_over_the_global_default(make_tenant, db: Database, owner_db: Database) -> None:  # type: ignore[no-untyped-def]
    # given a flag that is on by default and off by default, and a tenant overriding each
    async with owner_db.transaction() as session:
        await flags.create_flag(session, FlagCreate(name="beta_reports"), OPERATOR)
    tenant, other = await make_tenant(), await make_tenant()
    await _override(db, tenant.id, "custom_roles", False)
    await _override(db, tenant.id, "beta_reports", True)
    # then the tenant sees its overrides, and the other tenant only the defaults
    assert await _effective(db, tenant.id) == {"beta_reports": True, "custom_roles": False}
    assert await _effective(db, other.id) == {"beta_reports": False, "custom_roles": True}
    async with db.tenant_transaction(tenant.id) as session:
        assert await flags.is_enabled(session, tenant.id, "beta_reports") is True
        with pytest.raises(NotFound):
            await flags.is_enabled(session, tenant.id, "no_such_flag")
        with pytest.raises(Forbidden) as refused:
            await flags.ensure_enabled(session, tenant.id, "custom_roles")
    assert refused.value.extra == {"reason": "feature_disabled", "flag": "custom_roles"}


async def test_row_level_security_hides_other_tenants_overrides(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant, other = await make_tenant(), await make_tenant()
    await _override(db, tenant.id, "custom_roles", False)
    async with db.tenant_transaction(other.id) as session:
        assert await session.scalar(text("SELECT count(*) FROM tenant_feature_flags")) == 0
    async with db.tenant_transaction(tenant.id) as session:
        assert await session.scalar(text("SELECT count(*) FROM tenant_feature_flags")) == 1


async def test_evaluation_is_cached_until_a_change_through_the_service(
    make_tenant, db: Database, owner_db: Database
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    assert await _effective(db, tenant.id) == {"custom_roles": True}
    # when the tables change behind the service's back, the cached answer stands
    await _override(db, tenant.id, "custom_roles", False)
    async with owner_db.transaction() as session:
        await session.execute(text("INSERT INTO feature_flags (name, enabled) VALUES ('raw_flag', true)"))
    assert await _effective(db, tenant.id) == {"custom_roles": True}
    # when a global flag changes through the service, this process forgets every tenant's flags
    async with owner_db.transaction() as session:
        await flags.update_flag(session, "raw_flag", FlagUpdate(description="now documented"), OPERATOR)
    assert await _effective(db, tenant.id) == {"custom_roles": False, "raw_flag": True}


async def test_a_rolled_back_change_is_never_cached(make_tenant, db: Database, owner_db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    with pytest.raises(RuntimeError):
        async with owner_db.transaction() as session:
            await flags.update_flag(session, "custom_roles", FlagUpdate(enabled=False), OPERATOR)
            async with session.begin_nested():  # a savepoint ending is not the change committing
                pass
            # the changing transaction sees its own change, past the cache
            assert await flags.effective(session, tenant.id) == {"custom_roles": False}
            raise RuntimeError("roll back")
    assert await _effective(db, tenant.id) == {"custom_roles": True}


async def test_a_value_read_while_a_change_was_uncommitted_is_dropped_at_commit(
    make_tenant, db: Database, owner_db: Database
) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    async with owner_db.transaction() as session:
        await flags.update_flag(session, "custom_roles", FlagUpdate(enabled=False), OPERATOR)
        # another request reads (and caches) the committed value before this change commits
        assert await _effective(db, tenant.id) == {"custom_roles": True}
    assert await _effective(db, tenant.id) == {"custom_roles": False}


async def test_global_flag_lifecycle(make_tenant, db: Database, owner_db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    async with owner_db.transaction() as session:
        created = await flags.create_flag(
            session, FlagCreate(name="dark_mode", description="A darker dashboard", enabled=True), OPERATOR
        )
    assert (created.name, created.description, created.enabled) == ("dark_mode", "A darker dashboard", True)
    with pytest.raises(Conflict):
        async with owner_db.transaction() as session:
            await flags.create_flag(session, FlagCreate(name="dark_mode"), OPERATOR)
    await _override(db, tenant.id, "dark_mode", False)
    async with owner_db.transaction() as session:
        assert [f.name for f in await flags.list_flags(session)] == ["custom_roles", "dark_mode"]
        await flags.delete_flag(session, "dark_mode", OPERATOR)
    # the override went with the flag
    assert await _effective(db, tenant.id) == {"custom_roles": True}
    async with db.tenant_transaction(tenant.id) as session:
        assert await session.scalar(text("SELECT count(*) FROM tenant_feature_flags")) == 0
    # a flag the code checks cannot be deleted; an unknown one is not found
    with pytest.raises(Conflict):
        async with owner_db.transaction() as session:
            await flags.delete_flag(session, "custom_roles", OPERATOR)
    with pytest.raises(NotFound):
        async with owner_db.transaction() as session:
            await flags.update_flag(session, "no_such_flag", FlagUpdate(enabled=True), OPERATOR)


async def test_runtime_role_reads_global_flags_but_cannot_change_them(db: Database) -> None:
    async with db.transaction() as session:
        assert await session.scalar(text("SELECT enabled FROM feature_flags WHERE name = 'custom_roles'")) is True
    for statement in (
        "UPDATE feature_flags SET enabled = false",
        "INSERT INTO feature_flags (name) VALUES ('sneaky')",
        "DELETE FROM feature_flags",
    ):
        with pytest.raises(Exception, match="permission denied"):
            async with db.transaction() as session:
                await session.execute(text(statement))


def test_cache_entries_expire() -> None:
    cache = flags.FlagCache(ttl=0.05)
    tenant_id = uuid.uuid4()
    cache.put(tenant_id, {"custom_roles": True}, cache.generation)
    assert cache.get(tenant_id) == {"custom_roles": True}
    time.sleep(0.06)
    assert cache.get(tenant_id) is None


def test_cache_drops_what_was_read_before_an_invalidation_and_stays_bounded() -> None:
    cache = flags.FlagCache(ttl=10, max_tenants=2)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    read_at = cache.generation
    cache.invalidate(first)  # a change commits while a read is under way
    cache.put(first, {"custom_roles": True}, read_at)
    assert cache.get(first) is None
    for tenant_id in (first, second, third):
        cache.put(tenant_id, {"custom_roles": True}, cache.generation)
    assert cache.get(first) is None  # the oldest entry made room
    assert cache.get(second) == cache.get(third) == {"custom_roles": True}
