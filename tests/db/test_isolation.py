"""Tenant isolation through the runtime role, with hand-written SQL: RLS is the last line."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from castmetrics.db import urls
from castmetrics.db.session import Database
from castmetrics.outbox import service as outbox


async def _seed_two_tenants(make_tenant, db: Database) -> tuple[uuid.UUID, uuid.UUID]:  # type: ignore[no-untyped-def]
    a = await make_tenant("tenant-a")
    b = await make_tenant("tenant-b")
    for tenant in (a, b):
        async with db.tenant_transaction(tenant.id) as session:
            await outbox.add_event(session, tenant_id=tenant.id, event_type="test.seeded", payload={"n": 1})
    return a.id, b.id


async def test_runtime_role_is_plain_login_role(db: Database) -> None:
    # Owns nothing lasting: the only tables it may create are temporary (event ingestion's staging).
    async with db.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT current_user, r.rolsuper, r.rolbypassrls, "
                    "(SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid AND c.relpersistence <> 't') AS owned "
                    "FROM pg_roles r WHERE r.rolname = current_user"
                )
            )
        ).one()
    assert row.current_user == "castmetrics_test_app"
    assert (row.rolsuper, row.rolbypassrls, row.owned) == (False, False, 0)


async def test_no_tenant_set_sees_no_rows(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    await _seed_two_tenants(make_tenant, db)
    async with db.transaction() as session:
        for table in ("tenants", "outbox_events", "audit_log"):
            assert (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one() == 0


async def test_tenant_sees_only_its_own_rows(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    a, b = await _seed_two_tenants(make_tenant, db)
    async with db.tenant_transaction(a) as session:
        tenants = (await session.execute(text("SELECT id FROM tenants"))).scalars().all()
        events = (await session.execute(text("SELECT tenant_id FROM outbox_events"))).scalars().all()
        by_id = (
            await session.execute(text("SELECT count(*) FROM outbox_events WHERE tenant_id = :b"), {"b": b})
        ).scalar_one()
    assert tenants == [a]
    assert set(events) == {a}
    assert by_id == 0


async def test_tenant_cannot_update_or_delete_another_tenants_rows(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    a, b = await _seed_two_tenants(make_tenant, db)
    async with db.tenant_transaction(a) as session:
        updated = await session.execute(
            text("UPDATE outbox_events SET event_type = 'hijacked.event' WHERE tenant_id = :b"), {"b": b}
        )
        deleted = await session.execute(text("DELETE FROM outbox_events WHERE tenant_id = :b"), {"b": b})
        renamed = await session.execute(text("UPDATE tenants SET name = 'hijacked' WHERE id = :b"), {"b": b})
    assert (updated.rowcount, deleted.rowcount, renamed.rowcount) == (0, 0, 0)  # type: ignore[attr-defined]
    async with db.tenant_transaction(b) as session:
        types = (await session.execute(text("SELECT event_type FROM outbox_events"))).scalars().all()
        name = (await session.execute(text("SELECT name FROM tenants"))).scalar_one()
    assert sorted(types) == ["tenant.created", "test.seeded"]
    assert name == "Test Network"


async def test_tenant_cannot_write_rows_for_another_tenant(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    a, b = await _seed_two_tenants(make_tenant, db)
    with pytest.raises(DBAPIError, match="row-level security"):
        async with db.tenant_transaction(a) as session:
            await session.execute(
                text("INSERT INTO outbox_events (tenant_id, event_type) VALUES (:b, 'forged.event')"),
                {"b": b},
            )
    with pytest.raises(DBAPIError, match="row-level security"):
        async with db.tenant_transaction(a) as session:
            await session.execute(text("UPDATE outbox_events SET tenant_id = :b"), {"b": b})


async def test_context_does_not_outlive_its_transaction(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    a, _ = await _seed_two_tenants(make_tenant, db)
    async with db.engine.connect() as conn:
        async with conn.begin():
            await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(a)})
            assert (await conn.execute(text("SELECT count(*) FROM outbox_events"))).scalar_one() == 2
        # same connection, next transaction: the setting reads '' and matches nothing
        async with conn.begin():
            assert (await conn.execute(text("SELECT count(*) FROM outbox_events"))).scalar_one() == 0


async def test_runtime_role_cannot_switch_rls_off(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DBAPIError, match="must be owner"):
        async with db.transaction() as session:
            await session.execute(text("ALTER TABLE outbox_events DISABLE ROW LEVEL SECURITY"))
    with pytest.raises(DBAPIError, match="would be affected by row-level security"):
        async with db.transaction() as session:
            await session.execute(text("SET row_security = off; SELECT count(*) FROM outbox_events"))


async def test_isolation_tests_fail_without_rls(make_tenant, db: Database, owner_url: str) -> None:  # type: ignore[no-untyped-def]
    """Shows the tests above depend on RLS: with it switched off, tenant A reads tenant B's rows."""
    a, b = await _seed_two_tenants(make_tenant, db)
    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as owner:
        owner.execute("ALTER TABLE outbox_events DISABLE ROW LEVEL SECURITY")
        try:
            async with db.tenant_transaction(a) as session:
                leaked = (
                    await session.execute(text("SELECT count(*) FROM outbox_events WHERE tenant_id = :b"), {"b": b})
                ).scalar_one()
        finally:
            owner.execute("ALTER TABLE outbox_events ENABLE ROW LEVEL SECURITY")
    assert leaked == 2
