"""The guard: every table with a tenant_id has forced RLS, a tenant policy and tenant_id in its key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, create_engine, pool, text

from castmetrics.db import urls
from castmetrics.db.rls import tenant_isolation_violations


@pytest.fixture
def owner_connection(owner_url: str, runtime_url: str) -> Iterator[Connection]:
    """An owner connection inside a transaction that is always rolled back."""
    engine = create_engine(urls.sqlalchemy_url(owner_url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()
    engine.dispose()


def test_every_tenant_table_is_isolated(owner_connection: Connection) -> None:
    # given the schema built by the real migrations
    tenant_tables = owner_connection.execute(
        text(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'tenant_id'"
        )
    ).scalar_one()
    # then there are tenant tables, and the guard finds nothing wrong with any of them
    assert tenant_tables >= 2
    assert tenant_isolation_violations(owner_connection) == []


@pytest.mark.parametrize(
    ("sabotage", "expected"),
    [
        (
            "ALTER TABLE outbox_events NO FORCE ROW LEVEL SECURITY",
            "outbox_events: row-level security is not forced",
        ),
        ("ALTER TABLE audit_log DISABLE ROW LEVEL SECURITY", "audit_log: row-level security is not enabled"),
        ("DROP POLICY tenant_isolation ON outbox_events", "outbox_events: no policy on app.tenant_id"),
        (
            "CREATE TABLE forgotten (tenant_id uuid NOT NULL, id uuid PRIMARY KEY)",
            "forgotten: row-level security is not enabled",
        ),
        (
            "CREATE VIEW leaky AS SELECT tenant_id, id FROM outbox_events",
            "leaky: view without security_invoker bypasses row-level security",
        ),
    ],
)
def test_guard_fails_when_isolation_is_removed(owner_connection: Connection, sabotage: str, expected: str) -> None:
    # when a change removes part of the isolation (rolled back after the test)
    owner_connection.execute(text(sabotage))
    # then the guard names it
    assert expected in tenant_isolation_violations(owner_connection)


def test_guard_requires_tenant_id_in_primary_key(owner_connection: Connection) -> None:
    owner_connection.execute(text("CREATE TABLE keyed_wrong (tenant_id uuid NOT NULL, id uuid PRIMARY KEY)"))
    owner_connection.execute(text("ALTER TABLE keyed_wrong ENABLE ROW LEVEL SECURITY"))
    owner_connection.execute(text("ALTER TABLE keyed_wrong FORCE ROW LEVEL SECURITY"))
    owner_connection.execute(
        text(
            "CREATE POLICY tenant_isolation ON keyed_wrong USING "
            "(tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)"
        )
    )
    assert tenant_isolation_violations(owner_connection) == ["keyed_wrong: tenant_id is not part of the primary key"]
