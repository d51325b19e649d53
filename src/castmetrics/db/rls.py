"""Row-level security for tenant tables: the one helper every migration calls."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

# NULLIF: after a transaction-local set_config ends, the setting reads '' rather than NULL in that
# session; both must mean "no tenant", which matches no row.
TENANT_PREDICATE = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"
POLICY_NAME = "tenant_isolation"


def tenant_rls_sql(table: str, predicate: str = TENANT_PREDICATE) -> list[str]:
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'CREATE POLICY {POLICY_NAME} ON "{table}" USING ({predicate}) WITH CHECK ({predicate})',
    ]


def enable_tenant_rls(connection: Connection, table: str, predicate: str = TENANT_PREDICATE) -> None:
    """``ENABLE`` + ``FORCE`` RLS on ``table`` with the fail-closed tenant policy.

    Use in a migration: ``enable_tenant_rls(op.get_bind(), "podcasts")``.
    """
    for statement in tenant_rls_sql(table, predicate):
        connection.execute(text(statement))
