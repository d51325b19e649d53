"""Bring a database to the current schema: Alembic revisions, then the runtime role's grants."""

from __future__ import annotations

from pathlib import Path

import psycopg
import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool

from castmetrics.config import Settings
from castmetrics.db import citus, rls, roles, urls

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class TenantIsolationError(RuntimeError):
    """A migration left a tenant table without forced RLS, a tenant policy or tenant_id in its key."""


def alembic_config(owner_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["owner_url"] = owner_url
    return config


def upgrade(owner_url: str, revision: str = "head") -> None:
    engine = create_engine(urls.sqlalchemy_url(owner_url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            # Serialises concurrent migrators (serve and worker starting together); released on commit.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('castmetrics.migrate'))")
            config = alembic_config(owner_url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            on_citus = citus.is_citus(connection)
            if on_citus:
                citus.distribute(connection)
            problems = rls.tenant_isolation_violations(
                connection, citus.partition_keyed(connection) if on_citus else ()
            )
            if problems:
                # Rolls the whole upgrade back: a schema that leaks across tenants never lands.
                raise TenantIsolationError("; ".join(problems))
        if on_citus:
            # The shards, once committed (the check reads them over the workers' own connections): a
            # cluster whose shards would leak refuses to start.
            with engine.begin() as connection:
                problems = citus.shard_isolation_violations(connection)
            if problems:
                raise TenantIsolationError("; ".join(problems))
    finally:
        engine.dispose()


def set_event_retention(owner_url: str, days: int) -> None:
    """Record the operator's retention where the partition-dropping function reads its floor."""
    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO castmetrics_settings (name, value) VALUES ('event_retention_days', %s) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            (str(days),),
        )


def migrate(settings: Settings, owner_url: str) -> str:
    """Apply all migrations as the owner, set up the runtime role; answer the runtime role's URL."""
    upgrade(owner_url)
    set_event_retention(owner_url, settings.event_retention_days)
    roles.ensure_runtime_role(settings, owner_url)
    log.info("db.migrated", database=urls.safe(owner_url))
    return roles.runtime_url(settings, owner_url)
