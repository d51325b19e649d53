"""Row-level security for tenant tables: the one helper every migration calls."""

from __future__ import annotations

from collections.abc import Collection

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


# Every relation in ``public`` with a tenant_id column, and what isolates it. Views must run with the
# caller's rights (security_invoker), or they would read through RLS as their owner; materialized
# views cannot carry RLS at all, so none may hold tenant rows.
_GUARD_SQL = """
SELECT c.relname,
       c.relkind,
       c.relrowsecurity,
       c.relforcerowsecurity,
       EXISTS (
           SELECT 1 FROM pg_policy p
           WHERE p.polrelid = c.oid
             AND pg_get_expr(p.polqual, p.polrelid) LIKE '%app.tenant_id%'
       ) AS has_tenant_policy,
       EXISTS (
           SELECT 1 FROM pg_constraint k
           JOIN pg_attribute ka ON ka.attrelid = k.conrelid AND ka.attnum = ANY (k.conkey)
           WHERE k.conrelid = c.oid AND k.contype = 'p' AND ka.attname = 'tenant_id'
       ) AS tenant_in_pk,
       coalesce('security_invoker=true' = ANY (c.reloptions)
                OR 'security_invoker=on' = ANY (c.reloptions), false) AS invoker_view
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
ORDER BY c.relname
"""


def tenant_isolation_violations(connection: Connection, partition_keyed: Collection[str] = ()) -> list[str]:
    """What is wrong with tenant isolation in the catalog, one line per problem; empty when sound.
    ``partition_keyed``: partitioned tables whose key leading with ``tenant_id`` is on each partition instead
    (event tables on Citus, ``db.citus``)."""
    problems: list[str] = []
    for row in connection.execute(text(_GUARD_SQL)):
        name, kind = row.relname, row.relkind
        if kind == "m":
            problems.append(f"{name}: a materialized view cannot enforce row-level security")
            continue
        if kind == "v":
            if not row.invoker_view:
                problems.append(f"{name}: view without security_invoker bypasses row-level security")
            continue
        if not row.relrowsecurity:
            problems.append(f"{name}: row-level security is not enabled")
        if not row.relforcerowsecurity:
            problems.append(f"{name}: row-level security is not forced")
        if not row.has_tenant_policy:
            problems.append(f"{name}: no policy on app.tenant_id")
        if not row.tenant_in_pk and not (kind == "p" and name in partition_keyed):
            problems.append(f"{name}: tenant_id is not part of the primary key")
    return problems
