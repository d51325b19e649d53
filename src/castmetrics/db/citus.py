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
# tenant setting, no distributed table. A transaction that read several shards in parallel may not then
# modify a reference table that distributed tables refer to (``tenants``): multi-shard work goes over one
# connection per node (``multi_shard_modify_mode``), which keeps such a transaction valid; a tenant's own
# work is routed to one shard and does not notice.
SETTINGS = {
    "citus.propagate_set_commands": "local",
    "citus.enable_unsafe_triggers": "on",
    "citus.multi_shard_modify_mode": "sequential",
}


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
    _columnar_history(connection)
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
            "p.proretset, p.provolatile, p.prosrc, p.proargnames, p.pronargs, p.proconfig, "
            "CAST(CAST(p.proallargtypes AS regtype[]) AS text[]) AS all_types, p.proargmodes AS modes "
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
            # RETURN QUERY, unlike a SQL function, does not coerce the rows to the declared types (a varchar
            # column of a function returning text): each output column is cast to its declared type.
            if f.modes and "t" in f.modes:
                types = [t for t, mode in zip(f.all_types, f.modes, strict=True) if mode == "t"]
            else:
                types = [f.result.removeprefix("SETOF ")]
            names = ", ".join(f"c{n}" for n in range(len(types)))
            casts = ", ".join(f"CAST(q.c{n} AS {t})" for n, t in enumerate(types))
            body = f"SELECT {casts} FROM ({body}) AS q({names})"
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


# --- columnar history ---------------------------------------------------------------------------------
#
# On the cluster a day partition of an event table is converted to Citus's columnar storage once it is
# older than CASTMETRICS_COLUMNAR_AFTER_DAYS (``castmetrics_event_partitions_columnar``, run by the
# partition maintenance job). A columnar table keeps no index worth its bytes (the primary key alone costs
# some 60 bytes an event, the columnar data about 30), so on the cluster the event tables' indexes belong to
# each heap partition, not to the parent (``PARTITION_INDEXES``; ``castmetrics_event_partitions_index``
# makes them for partitions created later), and a converted day drops them. What the unique key did for a
# columnar day, answer a re-sent event as a duplicate, is done by ``EVENT_DIGESTS``: per tenant, table and
# day, the 48-bit digests of the stored events' keys (id, occurred_at), in 64 buckets (a tenant table like the
# others, under the same row-level security; the conversion writes it as the owner); the writer adds a batch's
# new digests for such a day in the transaction that stores the events whose digests were new
# (``events.writer``). A new event whose digest equals a stored one of the same tenant and day would be taken
# for a duplicate: about 1 in 10^8 for a late event of a day that holds two million (docs/architecture.md).

EVENT_DIGESTS = "public.event_digests"
# Coordinator-local, out of the runtime role's reach.
PARTITION_INDEXES = "castmetrics_platform.partition_indexes"
TENANT = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"
# The event tables whose rows carry a client's key (listener and attribution events); download requests
# get their ids from the recorder and are never sent twice.
DIGESTED = ("listener_events", "attribution_events")
# A key's digest: the first 6 bytes of SHA-256 over the id's 16 bytes and occurred_at as PostgreSQL sends
# it (microseconds since 2000-01-01, 8 bytes big-endian) (``events.writer.digest``); a bucket's digests are
# stored end to end in one bytea. Its bucket: the top 6 bits of its first byte.
DIGEST_BYTES = 6
DIGEST_SQL = f"substr(sha256(uuid_send({{id}}) || timestamptz_send({{at}})), 1, {DIGEST_BYTES})"
BUCKET_SQL = "(get_byte({d}, 0) >> 2)"
# Columnar compression of converted days: zstd's level 19 instead of 3, some 8 % smaller for event rows (the
# conversion runs once a day, in the background).
COLUMNAR_COMPRESSION_LEVEL = 19
# Partitions converted by one call, oldest days first (one transaction): a cluster that gains columnar history
# with a long history behind it converts some ten days an hour, not all of them under one lock at once.
CONVERSIONS_PER_RUN = 30

_COLUMNAR_OBJECTS = [
    f"""
    CREATE TABLE IF NOT EXISTS {PARTITION_INDEXES} (
        parent text NOT NULL,
        suffix text NOT NULL,
        is_unique boolean NOT NULL,
        columns text NOT NULL,
        PRIMARY KEY (parent, suffix)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {EVENT_DIGESTS} (
        tenant_id uuid NOT NULL,
        kind text NOT NULL,
        day date NOT NULL,
        bucket int NOT NULL,
        digests bytea NOT NULL,
        CONSTRAINT pk_event_digests PRIMARY KEY (tenant_id, kind, day, bucket)
    )
    """,
    f"ALTER TABLE {EVENT_DIGESTS} ENABLE ROW LEVEL SECURITY",
    f"ALTER TABLE {EVENT_DIGESTS} FORCE ROW LEVEL SECURITY",
    f"DROP POLICY IF EXISTS tenant_isolation ON {EVENT_DIGESTS}",
    f"CREATE POLICY tenant_isolation ON {EVENT_DIGESTS} USING ({TENANT}) WITH CHECK ({TENANT})",
    # The conversion (as the owner, for every tenant of a day) records the digests of a whole partition.
    f"DROP POLICY IF EXISTS conversion ON {EVENT_DIGESTS}",
    f"CREATE POLICY conversion ON {EVENT_DIGESTS} TO CURRENT_USER USING (true) WITH CHECK (true)",
    # The digests of days whose partitions the retention dropped (never a day the operator's retention keeps,
    # whatever the caller asks, as castmetrics_event_partitions_drop).
    f"""
    CREATE OR REPLACE FUNCTION public.castmetrics_event_digests_expire(p_before date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE
        keep_days integer;
        gone integer;
    BEGIN
        IF p_before IS NULL THEN
            RAISE EXCEPTION 'a day is required' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT coalesce(max(value::integer), 730) INTO keep_days
          FROM public.castmetrics_settings WHERE name = 'event_retention_days';
        DELETE FROM {EVENT_DIGESTS} WHERE day < least(p_before, current_date - (keep_days - 1));
        GET DIAGNOSTICS gone = ROW_COUNT;
        RETURN gone;
    END
    $$
    """,
    # The indexes of the event tables' heap partitions from p_from to p_to that lack them.
    f"""
    CREATE OR REPLACE FUNCTION public.castmetrics_event_partitions_index(p_from date, p_to date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE
        part record;
        idx record;
        made integer := 0;
    BEGIN
        FOR part IN
            SELECT c.relname, p.relname AS parent FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            JOIN pg_am a ON a.oid = c.relam
            WHERE c.relnamespace = 'castmetrics_events'::regnamespace AND a.amname = 'heap'
              AND c.relname ~ '_p[0-9]{{8}}$'
              AND to_date(right(c.relname, 8), 'YYYYMMDD') BETWEEN p_from AND p_to
        LOOP
            FOR idx IN SELECT * FROM {PARTITION_INDEXES} WHERE parent = part.parent LOOP
                IF to_regclass('castmetrics_events.' || part.relname || '_' || idx.suffix) IS NULL THEN
                    EXECUTE format('CREATE %s INDEX %I ON castmetrics_events.%I %s',
                        CASE WHEN idx.is_unique THEN 'UNIQUE' ELSE '' END,
                        part.relname || '_' || idx.suffix, part.relname, idx.columns);
                    made := made + 1;
                END IF;
            END LOOP;
        END LOOP;
        RETURN made;
    END
    $$
    """,
    # Converts the heap day partitions of the event tables before p_before to columnar: the events' digests
    # recorded, the partition's indexes dropped, then the table rewritten. Each partition is locked against
    # writers first, so no event reaches it between its digests and its conversion.
    f"""
    CREATE OR REPLACE FUNCTION public.castmetrics_event_partitions_columnar(p_before date) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET columnar.compression_level = {COLUMNAR_COMPRESSION_LEVEL} AS $$
    DECLARE
        part record;
        idx record;
    BEGIN
        IF p_before IS NULL OR p_before > current_date - 1 THEN
            RAISE EXCEPTION 'only days before yesterday are converted (asked: before %)', p_before
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM pg_advisory_xact_lock(hashtext('castmetrics:event_partitions'));
        FOR part IN
            SELECT c.relname, p.relname AS parent, to_date(right(c.relname, 8), 'YYYYMMDD') AS day
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            JOIN pg_am a ON a.oid = c.relam
            WHERE c.relnamespace = 'castmetrics_events'::regnamespace AND a.amname = 'heap'
              AND p.relnamespace = 'public'::regnamespace AND c.relname ~ '_p[0-9]{{8}}$'
              AND to_date(right(c.relname, 8), 'YYYYMMDD') < p_before
            ORDER BY 3, 1
            LIMIT {CONVERSIONS_PER_RUN}
        LOOP
            EXECUTE format('LOCK TABLE castmetrics_events.%I IN SHARE MODE', part.relname);
            IF part.parent = ANY(ARRAY{list(DIGESTED)}) THEN
                EXECUTE format(
                    'INSERT INTO {EVENT_DIGESTS} (tenant_id, kind, day, bucket, digests) '
                    'SELECT tenant_id, %L, %L::date, {BUCKET_SQL.format(d="d")}, string_agg(d, ''''::bytea ORDER BY d) '
                    'FROM (SELECT tenant_id, {DIGEST_SQL.format(id="id", at="occurred_at").replace("'", "''")} AS d '
                    'FROM castmetrics_events.%I) s GROUP BY 1, 4 '
                    'ON CONFLICT (tenant_id, kind, day, bucket) DO UPDATE '
                    'SET digests = event_digests.digests || EXCLUDED.digests',
                    part.parent, part.day, part.relname);
            END IF;
            FOR idx IN
                SELECT i.indexrelid::regclass::text AS name FROM pg_index i
                WHERE i.indrelid = format('castmetrics_events.%I', part.relname)::regclass
            LOOP
                EXECUTE 'DROP INDEX ' || idx.name;
            END LOOP;
            PERFORM alter_table_set_access_method(format('castmetrics_events.%I', part.relname), 'columnar');
            RETURN NEXT part.relname;
        END LOOP;
    END
    $$
    """,
]


def _columnar_history(connection: Connection) -> None:
    """The objects of columnar history (above), the event tables' indexes moved from each parent to its heap
    partitions, and the digest table distributed with the tenants' other rows. Idempotent."""
    connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS citus_columnar")
    for statement in _COLUMNAR_OBJECTS:
        connection.exec_driver_sql(statement.replace("%", "%%"))
    if not connection.execute(
        text("SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = CAST(:t AS regclass))"),
        {"t": EVENT_DIGESTS},
    ).scalar():
        connection.execute(
            text("SELECT create_distributed_table(:t, 'tenant_id', colocate_with => :anchor)"),
            {"t": EVENT_DIGESTS, "anchor": ANCHOR},
        )
    parents = connection.execute(
        text(
            "SELECT c.relname FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid "
            "WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1"
        )
    ).scalars()
    for parent in list(parents):
        indexes = connection.execute(
            text(
                "SELECT ix.relname AS name, i.indisunique AS is_unique, k.conname AS constraint_name, "
                "substring(pg_get_indexdef(i.indexrelid) FROM ' USING btree (\\(.*\\))$') AS columns "
                "FROM pg_index i JOIN pg_class ix ON ix.oid = i.indexrelid "
                "LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid "
                "WHERE i.indrelid = CAST(:t AS regclass) ORDER BY 1"
            ),
            {"t": f"public.{parent}"},
        ).all()
        for index in indexes:
            suffix = "key" if index.is_unique else index.name.removeprefix(f"ix_{parent}_")
            connection.execute(
                text(
                    f"INSERT INTO {PARTITION_INDEXES} (parent, suffix, is_unique, columns) "
                    "VALUES (:parent, :suffix, :unique, :columns) ON CONFLICT (parent, suffix) DO NOTHING"
                ),
                {"parent": parent, "suffix": suffix, "unique": index.is_unique, "columns": index.columns},
            )
        if indexes:
            connection.exec_driver_sql("SELECT castmetrics_event_partitions_index('-infinity', 'infinity')")
        for index in indexes:
            if index.constraint_name:
                connection.exec_driver_sql(f'ALTER TABLE public."{parent}" DROP CONSTRAINT "{index.constraint_name}"')
            else:
                connection.exec_driver_sql(f'DROP INDEX public."{index.name}"')


def partition_keyed(connection: Connection) -> list[str]:
    """The partitioned tables whose unique key (leading with ``tenant_id``) is on each heap partition, not
    on the parent (``PARTITION_INDEXES``): exempt from the parent's primary-key check of the guard."""
    if connection.execute(text("SELECT to_regclass(:t)"), {"t": PARTITION_INDEXES}).scalar() is None:
        return []
    return list(
        connection.execute(
            text(f"SELECT parent FROM {PARTITION_INDEXES} WHERE is_unique AND columns LIKE '(tenant_id,%'")
        ).scalars()
    )
