"""Castmetrics on a Citus cluster: after the migrations, every table with a ``tenant_id`` is distributed by
it, all in one colocation group (a tenant's rows of every table live on the same node, so a tenant's joins
and transactions stay on one worker); the small global tables that tenant tables reference become
reference tables (a copy on every node). The job queue, migration state, operator settings and platform
administrators stay on the coordinator. Without the ``citus`` extension in the database nothing changes.

Idempotent: tables already distributed are left as they are; a table a later migration adds is distributed
the next time ``migrate`` runs. Day partitions made later (``castmetrics_event_partitions_ensure``) are
distributed by Citus as they are attached to their distributed parent."""

from __future__ import annotations

import graphlib
import re

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection

log = structlog.get_logger(__name__)

# Global tables that tenant tables reference (foreign keys) or that every node's queries join.
REFERENCE_TABLES = ("tenants", "permissions", "feature_flags")
# The table every other tenant table is colocated with.
ANCHOR = "podcasts"
# The prefix directory's notification triggers (revision 0017): on the cluster they would fire on the
# shards (a NOTIFY on a worker reaches no listener, and one in a transaction Citus commits in two phases is
# refused), so they are dropped there and the directory follows changes by its periodic reload.
NOTIFY_TRIGGERS = (
    ("tenants", "measurement_prefix_tenant"),
    ("tenants", "measurement_prefix_tenants_truncated"),
    ("episodes", "measurement_prefix_episode_added"),
    ("episodes", "measurement_prefix_episode_moved"),
)
# Settings of the database on the cluster. The tenant setting reaches the workers only as ``SET LOCAL``
# with ``propagate_set_commands`` (``db.session.set_tenant_sql``). Triggers on distributed tables run on
# the shards; the one kept (the day partitions' tenant check) reads only the statement's new rows and the
# tenant setting, no distributed table.
SETTINGS = {"citus.propagate_set_commands": "local", "citus.enable_unsafe_triggers": "on"}


def is_citus(connection: Connection) -> bool:
    """Whether this database has the Citus extension (a coordinator, once workers are registered)."""
    return bool(connection.execute(text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")).scalar())


def _distributed(connection: Connection) -> set[str]:
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid "
            "WHERE c.relnamespace = 'public'::regnamespace"
        )
    )
    return {row[0] for row in rows}


def tenant_tables(connection: Connection) -> list[str]:
    """The tables of ``public`` with a ``tenant_id`` column (partitioned parents, not their partitions),
    ordered so that a table comes after every table it references."""
    tables = {
        row[0]
        for row in connection.execute(
            text(
                "SELECT c.relname FROM pg_class c "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped "
                "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            )
        )
    }
    graph: dict[str, set[str]] = {table: set() for table in tables}
    for child, parent in connection.execute(
        text(
            "SELECT c.relname, p.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "JOIN pg_class p ON p.oid = k.confrelid WHERE k.contype = 'f' "
            "AND c.relnamespace = 'public'::regnamespace"
        )
    ):
        if child in graph and parent in tables and parent != child:
            graph[child].add(parent)
    return list(graphlib.TopologicalSorter(graph).static_order())


def distribute(connection: Connection) -> list[str]:
    """Make the global tables reference tables and distribute every tenant table by ``tenant_id``, colocated
    with ``ANCHOR``; answer the tables this call changed."""
    database = connection.execute(text("SELECT current_database()")).scalar_one()
    for name, value in SETTINGS.items():
        connection.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET {name} = '{value}'")
        connection.exec_driver_sql(f"SET LOCAL {name} = '{value}'")
    done = _distributed(connection)
    changed: list[str] = []
    for table, trigger in NOTIFY_TRIGGERS:
        connection.exec_driver_sql(f'DROP TRIGGER IF EXISTS "{trigger}" ON "{table}"')
    for table in REFERENCE_TABLES:
        if table not in done:
            connection.execute(text("SELECT create_reference_table(:t)"), {"t": table})
            changed.append(table)
    ordered = tenant_tables(connection)
    if ANCHOR in ordered:  # first, so that the others can be colocated with it
        ordered.remove(ANCHOR)
        ordered.insert(0, ANCHOR)
    pending = [table for table in ordered if table not in done]
    # Foreign keys between a table being distributed and another tenant table cannot span a local and a
    # distributed table: they are dropped, and added again once both sides are distributed (colocated, and
    # every one of them includes tenant_id).
    keys = list(
        connection.execute(
            text(
                "SELECT c.relname AS child, k.conname AS name, pg_get_constraintdef(k.oid) AS definition "
                "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
                "WHERE k.contype = 'f' AND c.relnamespace = 'public'::regnamespace "
                "AND c.relname = ANY(:tables) AND p.relname = ANY(:tables) "
                "AND (c.relname = ANY(:pending) OR p.relname = ANY(:pending)) ORDER BY 1, 2"
            ),
            {"tables": ordered, "pending": pending},
        )
    )
    for key in keys:
        connection.exec_driver_sql(f'ALTER TABLE "{key.child}" DROP CONSTRAINT "{key.name}"')
    for table in ordered:
        if table in done:
            continue
        if table == ANCHOR:
            connection.execute(text("SELECT create_distributed_table(:t, 'tenant_id')"), {"t": table})
        else:
            connection.execute(
                text("SELECT create_distributed_table(:t, 'tenant_id', colocate_with => :anchor)"),
                {"t": table, "anchor": ANCHOR},
            )
        changed.append(table)
    set_null = re.compile(r" ON DELETE SET (?:NULL|DEFAULT)(?: \([^)]*\))?")
    for key in keys:
        # Citus refuses ON DELETE SET NULL on a key that includes the distribution column: the services
        # clear those references before they delete (catalog.delete_episode, sponsorship.delete_booking).
        definition = set_null.sub("", key.definition)
        connection.exec_driver_sql(f'ALTER TABLE "{key.child}" ADD CONSTRAINT "{key.name}" {definition}')
    _plpgsql_definers(connection)
    if changed:
        log.info("db.citus_distributed", tables=changed)
    return changed


def _plpgsql_definers(connection: Connection) -> None:
    """Citus cannot plan a query inside a SQL-language function that uses the function's parameters
    (SECURITY DEFINER functions are never inlined). Each such function of ``public`` is restated in PL/pgSQL
    with the same signature, privileges and settings, running its one statement as a parameterized EXECUTE.
    Idempotent: a function restated already is no longer SQL-language."""
    functions = connection.execute(
        text(
            "SELECT p.proname, "
            "pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result, "
            "p.proretset, p.provolatile, p.prosrc, p.proargnames, p.pronargs, p.proconfig "
            "FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
            "WHERE p.pronamespace = 'public'::regnamespace AND l.lanname = 'sql' AND p.prosecdef AND p.pronargs > 0"
        )
    ).all()
    for f in functions:
        body = f.prosrc.strip().rstrip(";")
        for n, name in enumerate((f.proargnames or [])[: f.pronargs], 1):
            body = re.sub(rf"\b{re.escape(name)}\b", f"${n}", body)
        using = ", ".join(f"${n}" for n in range(1, f.pronargs + 1))
        if f.proretset:
            statements = f"RETURN QUERY EXECUTE $q${body}$q$ USING {using};"
            declare = ""
        elif f.result == "void":
            statements, declare = f"EXECUTE $q${body}$q$ USING {using};", ""
        else:
            statements = f"EXECUTE $q${body}$q$ INTO answer USING {using}; RETURN answer;"
            declare = f"DECLARE answer {f.result};"
        volatility = {"i": "IMMUTABLE", "s": "STABLE"}.get(f.provolatile, "VOLATILE")
        settings = " ".join(
            f"SET {name} = {value}" for name, _, value in (entry.partition("=") for entry in f.proconfig or [])
        )
        statement = (
            f"CREATE OR REPLACE FUNCTION public.{f.proname}({f.arguments}) RETURNS {f.result} "
            f"LANGUAGE plpgsql {volatility} SECURITY DEFINER {settings} AS $f$ {declare} BEGIN {statements} END $f$"
        )
        connection.exec_driver_sql(statement.replace("%", "%%"))  # the driver's placeholders


# Run on every shard placement of a table (``%s`` is the shard's name): whether RLS is enabled and forced
# there with a policy on app.tenant_id, as on the coordinator's table.
_SHARD_GUARD = (
    "SELECT c.relrowsecurity AND c.relforcerowsecurity AND EXISTS (SELECT 1 FROM pg_policy p "
    "WHERE p.polrelid = c.oid AND pg_get_expr(p.polqual, p.polrelid) LIKE '%%app.tenant_id%%') "
    "FROM pg_class c WHERE c.oid = '%s'::regclass"
)


def shard_isolation_violations(connection: Connection) -> list[str]:
    """Tenant tables whose shards (on any worker) lack forced RLS and the tenant policy, or that are not
    distributed by ``tenant_id`` in the anchor's colocation group; empty when sound."""
    problems: list[str] = []
    distribution = {
        row.relname: row
        for row in connection.execute(
            text(
                "SELECT c.relname, p.partmethod, p.colocationid, "
                "column_to_column_name(p.logicalrelid, p.partkey) AS column "
                "FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid "
                "WHERE c.relnamespace = 'public'::regnamespace"
            )
        )
    }
    anchor = distribution.get(ANCHOR)
    for table in tenant_tables(connection):
        found = distribution.get(table)
        if found is None or found.partmethod != "h" or found.column != "tenant_id":
            problems.append(f"{table}: not distributed by tenant_id")
            continue
        if anchor is not None and found.colocationid != anchor.colocationid:
            problems.append(f"{table}: not colocated with {ANCHOR}")
        for row in connection.execute(
            text("SELECT nodename, nodeport, success, result FROM run_command_on_placements(:t, :command)"),
            {"t": table, "command": _SHARD_GUARD},
        ):
            if not row.success or row.result != "t":
                problems.append(f"{table}: a shard on {row.nodename}:{row.nodeport} lacks forced tenant RLS")
    return problems
