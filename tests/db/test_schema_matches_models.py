"""The ORM models against the schema the real migrations build: tables, columns (type, nullability, server
default), foreign keys with their actions, unique constraints and the indexes the models declare."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, Text, create_engine, inspect, pool, text

from castmetrics.db import urls
from castmetrics.db.base import Base
from castmetrics.db.registry import load_all_models

# Tables the migrations create that no ORM model maps, each with the reason. A table missing from the
# models and from this list fails the test: map it, or list it here with why it is SQL-only.
NON_ORM_TABLES = {
    # Day-partitioned raw events (events/partitions.py): written by COPY, read by set-based SQL.
    "listener_events": "partitioned parent of the listener events",
    "attribution_events": "partitioned parent of the attribution touchpoints and conversions",
    "download_requests": "partitioned parent of the measurement prefix's download requests",
    # Rollups and counters, written and read by set-based SQL in the service that owns them.
    "listener_daily": "daily listener rollup (events/rollups.py, analytics)",
    "listener_hourly": "hourly listener rollup (events/rollups.py, analytics)",
    "listener_monthly": "monthly listener rollup (events/rollups.py, analytics)",
    "listener_keys": "listener id to integer key for the unique-listener bitmaps (events/rollups.py)",
    "listener_key_counters": "last listener key handed out per tenant (events/rollups.py)",
    "rollup_invalidations": "days whose rollups are stale (events/rollups.py, analytics/cache.py)",
    "download_daily": "IAB v2 downloads per day (measurement/counting.py)",
    "download_hourly": "IAB v2 downloads per hour (measurement/counting.py)",
    "download_breakdown_daily": "downloads per country, app and device (measurement/counting.py)",
    "download_listeners_daily": "IAB v2 listeners per day (measurement/counting.py)",
    "download_sketches": "HyperLogLog sketches of listeners (measurement/sketches.py)",
    "download_sketches_monthly": "monthly unions of the listener sketches (measurement/sketches.py)",
    "listener_totals_monthly": "monthly sums of the daily listener rollup (events/rollups.py, analytics)",
    "download_totals_monthly": "monthly sums of the daily IAB downloads (measurement/counting.py, analytics)",
    "usage_monthly": "metered usage, upserted by SQL (quotas/service.py)",
    "ingest_buckets": "ingest rate token buckets, updated by SQL (quotas/service.py)",
    "user_metrics": "login counters, upserted by SQL (identity/service.py)",
    "idempotency_keys": "stored answers of idempotent requests (http/idempotency.py)",
    # Settings the SECURITY DEFINER functions trust; read and written by the owner (db/migrate.py).
    "castmetrics_settings": "operator settings of the partition functions",
    # The job queue's own schema, applied verbatim from procrastinate by revision 0002.
    "procrastinate_jobs": "procrastinate's schema",
    "procrastinate_events": "procrastinate's schema",
    "procrastinate_periodic_defers": "procrastinate's schema",
    "procrastinate_workers": "procrastinate's schema",
}

# Day partitions (``listener_events_p20261207``) live in the ``castmetrics_events`` schema, which is not
# compared (only the default schema is); should one ever be created in ``public`` it is skipped by name.
PARTITION = re.compile(r"^(?:listener_events|attribution_events|download_requests)_p\d{8}$")

# Unique indexes only the migrations declare, with the reason the models do not. Other indexes the models
# do not declare are not compared: the ORM issues no DDL, and the migrations' reviewed SQL owns them
# (descending, partial and expression indexes the models would only repeat). An index a model declares
# must exist as declared.
DB_ONLY_UNIQUE_INDEXES = {
    "uq_roles_name": "on (tenant_id, lower(name)): an expression index",
    "uq_platform_admins_email": "on lower(email): an expression index",
    "ux_workflow_executions_event": "partial (WHERE event_id IS NOT NULL): one execution per workflow and event",
}


def _include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (type_ == "table" and name is not None and PARTITION.match(name))


def _include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    only_in_database = reflected and compare_to is None
    if not only_in_database:
        return True
    if type_ == "table":
        return name not in NON_ORM_TABLES
    if type_ == "index":
        return bool(obj.unique) and name not in DB_ONLY_UNIQUE_INDEXES
    return True


def _server_default_differs(
    context: Any, inspected: Any, declared: Any, inspected_default: str | None, declared_default: Any, rendered: Any
) -> bool | None:
    # Ids: the database defaults to gen_random_uuid() for SQL inserts; the models set uuid4 in Python.
    if inspected_default == "gen_random_uuid()" and declared_default is None and declared.default is not None:
        return False
    return None  # alembic compares the rest


def schema_differences(conn: Connection, metadata: MetaData) -> list[Any]:
    """Alembic's autogenerate answer: what a revision would have to change to make the database match."""
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": _server_default_differs,
            "include_name": _include_name,
            "include_object": _include_object,
        },
    )
    return list(compare_metadata(context, metadata))


@pytest.fixture
def owner_connection(owner_url: str, runtime_url: str) -> Iterator[Connection]:
    """An owner connection to the migrated database, inside a transaction that is always rolled back."""
    engine = create_engine(urls.sqlalchemy_url(owner_url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()
    engine.dispose()


@pytest.fixture(scope="module")
def metadata() -> MetaData:
    load_all_models()
    return Base.metadata


def _copy(metadata: MetaData) -> MetaData:
    copied = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(copied)
    return copied


def test_models_match_the_migrated_schema(owner_connection: Connection, metadata: MetaData) -> None:
    # given the schema built by the real migrations, and every domain's models
    # when alembic compares them
    differences = schema_differences(owner_connection, metadata)
    # then a revision generated now would be empty
    assert not differences, "the models and the migrations differ:\n" + "\n".join(map(_describe, differences))


def test_the_non_orm_tables_exist_and_are_not_mapped(owner_connection: Connection, metadata: MetaData) -> None:
    # given the tables of the migrated database
    tables = set(inspect(owner_connection).get_table_names())
    # then every table listed as SQL-only is there (the list is not stale) and no model maps it
    assert set(NON_ORM_TABLES) - tables == set()
    assert set(NON_ORM_TABLES) & set(metadata.tables) == set()
    # and the partitions are in their own schema, out of the comparison
    assert not [t for t in tables if PARTITION.match(t)]


@pytest.mark.parametrize(
    ("sabotage", "expected"),
    [
        ("ALTER TABLE sponsors ADD COLUMN forgotten text", ("remove_column", "sponsors", "forgotten")),
        ("ALTER TABLE sponsors ALTER COLUMN name DROP NOT NULL", ("modify_nullable", "sponsors", "name")),
        ("ALTER TABLE bookings ALTER COLUMN rate_minor TYPE numeric", ("modify_type", "bookings", "rate_minor")),
        ("ALTER TABLE bookings ALTER COLUMN status SET DEFAULT 'confirmed'", ("modify_default", "bookings", "status")),
        ("CREATE TABLE forgotten (id uuid PRIMARY KEY)", ("remove_table", "forgotten", None)),
        ("CREATE UNIQUE INDEX uq_sponsors_name ON sponsors (tenant_id, name)", ("remove_index", "sponsors", None)),
        (
            "ALTER TABLE podcasts DROP CONSTRAINT fk_podcasts_tenant_id_tenants, ADD CONSTRAINT "
            "fk_podcasts_tenant_id_tenants FOREIGN KEY (tenant_id) REFERENCES tenants (id)",
            ("remove_fk", "podcasts", None),
        ),
    ],
)
def test_a_database_change_the_models_miss_is_found(
    owner_connection: Connection, metadata: MetaData, sabotage: str, expected: tuple[str, str, str | None]
) -> None:
    # when the database changes behind the models' back (rolled back after the test)
    owner_connection.execute(text(sabotage))
    # then the comparison names the change
    assert expected in [_summary(d) for d in schema_differences(owner_connection, metadata)]


def test_a_model_change_the_migrations_miss_is_found(owner_connection: Connection, metadata: MetaData) -> None:
    # given the models with a column no migration created (on a copy of the metadata)
    changed = _copy(metadata)
    changed.tables["sponsors"].append_column(Column("forgotten", Text, nullable=False))
    # when compared with the migrated database
    differences = schema_differences(owner_connection, changed)
    # then that column is the difference
    assert [_summary(d) for d in differences] == [("add_column", "sponsors", "forgotten")]


def _summary(difference: Any) -> tuple[str, str, str | None]:
    """(operation, table, column) of one autogenerate difference, column None for table-level ones."""
    if isinstance(difference, list):  # column modifications come as a list of one or more tuples
        op, _schema, table, column, *_ = difference[0]
        return op, table, column
    op, obj = difference[0], difference[-1]
    if op in ("add_column", "remove_column"):
        return op, difference[2], obj.name
    if op in ("add_table", "remove_table"):
        return op, obj.name, None
    return op, obj.table.name, None


def _describe(difference: Any) -> str:
    """One difference in words: what only the database or only the models have, or how a column differs."""
    if isinstance(difference, list):
        return "; ".join(
            f"{table}.{column}: {op.removeprefix('modify_')} is {old!r} in the database, {new!r} in the models"
            for op, _schema, table, column, _existing, old, new in difference
        )
    op, obj = difference[0], difference[-1]
    side = "only in the models" if op.startswith("add_") else "only in the database"
    if op in ("add_column", "remove_column"):
        return f"column {difference[2]}.{obj.name} {obj.type} ({'NULL' if obj.nullable else 'NOT NULL'}): {side}"
    if op in ("add_table", "remove_table"):
        return f"table {obj.name}: {side}"
    if op in ("add_fk", "remove_fk"):
        columns = ", ".join(c.name for c in obj.columns)
        action = obj.ondelete or "NO ACTION"
        return f"foreign key {obj.table.name} ({columns}) -> {obj.referred_table.name} ON DELETE {action}: {side}"
    if op in ("add_index", "remove_index"):
        kind = "unique index" if obj.unique else "index"
        columns = ", ".join(str(e) for e in obj.expressions)
    else:  # a unique constraint
        kind, columns = "unique constraint", ", ".join(c.name for c in obj.columns)
    return f"{kind} {obj.name} on {obj.table.name} ({columns}): {side}"
