"""The runtime login role: created or reused by the owner, checked, and granted table access."""

from __future__ import annotations

import hashlib
import hmac

import psycopg
import structlog
from psycopg import sql

from castmetrics.config import Settings
from castmetrics.db import urls

log = structlog.get_logger(__name__)


# Tables the runtime role must not touch, may only read, or may only add to.
NO_ACCESS_TABLES = frozenset({"alembic_version", "platform_admins", "castmetrics_settings"})
READ_ONLY_TABLES = frozenset({"permissions", "feature_flags"})
# Events are facts: appended, never edited through the application (retention drops whole days).
APPEND_ONLY_TABLES = frozenset({"audit_log", "listener_events", "attribution_events"})
# Day partitions of the event tables: the runtime role may only append to them (the COPY path).
PARTITION_SCHEMA = "castmetrics_events"


class RuntimeRoleError(RuntimeError):
    """The runtime role cannot be created, or exists with powers that would defeat RLS."""


def runtime_password(settings: Settings) -> str:
    """The runtime role's password: configured, or derived from the secret key (stable across starts)."""
    if settings.app_password is not None:
        return settings.app_password.get_secret_value()
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"castmetrics-runtime-role", hashlib.sha256).hexdigest()


def runtime_url(settings: Settings, owner_url: str) -> str:
    """Where request handling connects: the explicit app URL, else the owner's server as the app role."""
    if settings.app_database_url:
        return settings.app_database_url
    return urls.with_credentials(owner_url, settings.app_role, runtime_password(settings))


def ensure_runtime_role(settings: Settings, owner_url: str) -> None:
    """Create (or reuse) the runtime login role and grant it data access, never ownership.

    With ``CASTMETRICS_APP_DATABASE_URL`` set, production supplies the role; we only grant to it
    (when the owner may) and verify its powers.
    """
    role = settings.app_role
    if settings.app_database_url:
        role = urls.parse(settings.app_database_url).username or role
    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('castmetrics.runtime_role'))")
        row = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if row is None:
            if settings.app_database_url:
                raise RuntimeRoleError(f"role {role!r} of CASTMETRICS_APP_DATABASE_URL does not exist")
            me = conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
            if not me or not me[0]:
                raise RuntimeRoleError(
                    f"the DATABASE_URL user may not create the runtime role {role!r}; create it "
                    "(LOGIN NOSUPERUSER NOBYPASSRLS) and set CASTMETRICS_APP_DATABASE_URL"
                )
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(runtime_password(settings))
                )
            )
            log.info("db.runtime_role_created", role=role)
        else:
            superuser, bypassrls = row
            if superuser or bypassrls:
                raise RuntimeRoleError(
                    f"runtime role {role!r} is a superuser or has BYPASSRLS: row-level security "
                    "would not apply to it; use a plain login role"
                )
            if not settings.app_database_url:
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(runtime_password(settings))
                    )
                )
        grant_runtime_privileges(conn, role)


def grant_runtime_privileges(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    """Data access on every table, sequence and function of ``public``; nothing on migration state."""
    ident = sql.Identifier(role)
    db = conn.execute("SELECT current_database()").fetchone()
    assert db is not None
    statements = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(str(db[0])), ident),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(ident),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident),
        sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {}").format(ident),
    ]
    existing = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    for table in NO_ACCESS_TABLES & existing:
        statements.append(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(table), ident))
    for table in READ_ONLY_TABLES & existing:
        statements.append(
            sql.SQL("REVOKE INSERT, UPDATE, DELETE ON TABLE {} FROM {}").format(sql.Identifier(table), ident)
        )
    for table in APPEND_ONLY_TABLES & existing:
        statements.append(sql.SQL("REVOKE UPDATE, DELETE ON TABLE {} FROM {}").format(sql.Identifier(table), ident))
    has_partitions = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (PARTITION_SCHEMA,)).fetchone()
    if has_partitions and has_partitions[0]:
        schema = sql.Identifier(PARTITION_SCHEMA)
        statements += [
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, ident),
            sql.SQL("GRANT INSERT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, ident),
            # Partitions created later (by the owner's SECURITY DEFINER function) get the same.
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT INSERT ON TABLES TO {}").format(schema, ident),
        ]
    for statement in statements:
        conn.execute(statement)
