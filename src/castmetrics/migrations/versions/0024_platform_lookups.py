"""Cross-tenant uniqueness in platform tables (issue 20): an email belongs to one user and an API-key prefix
to one key across every tenant. Unique indexes without ``tenant_id`` (``users (lower(email))``,
``api_keys.prefix``) cannot exist on a table distributed by tenant (Citus), so the claims move to tables of
their own in the schema ``castmetrics_platform`` (on Citus they stay on the coordinator): the runtime role
has no access to that schema; it claims an email or a prefix, and finds a user by email or a key by prefix,
only through the narrow SECURITY DEFINER functions below. The same on a single server.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

SCHEMA = "castmetrics_platform"
FUNCTIONS = ("platform_claim_email(text, uuid, uuid)", "platform_claim_api_key_prefix(text, uuid, uuid)")


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA {SCHEMA}")
    op.execute(f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC")
    op.execute(
        f"""
        CREATE TABLE {SCHEMA}.user_emails (
            email text NOT NULL CONSTRAINT pk_user_emails PRIMARY KEY CHECK (email = lower(email)),
            tenant_id uuid NOT NULL,
            user_id uuid NOT NULL
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE {SCHEMA}.api_key_prefixes (
            prefix text NOT NULL CONSTRAINT pk_api_key_prefixes PRIMARY KEY,
            tenant_id uuid NOT NULL,
            key_id uuid NOT NULL
        )
        """
    )
    op.execute(f"INSERT INTO {SCHEMA}.user_emails SELECT lower(email), tenant_id, id FROM users")
    op.execute(f"INSERT INTO {SCHEMA}.api_key_prefixes SELECT prefix, tenant_id, id FROM api_keys")
    op.execute("DROP INDEX uq_users_email")
    op.execute("ALTER TABLE api_keys DROP CONSTRAINT uq_api_keys_prefix")
    op.execute("CREATE INDEX ix_users_email ON users (tenant_id, lower(email))")

    # Claims answer true when the email (prefix) was free and is now this user's (key's).
    op.execute(
        f"""
        CREATE FUNCTION platform_claim_email(p_email text, p_tenant uuid, p_user uuid) RETURNS boolean
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            INSERT INTO {SCHEMA}.user_emails (email, tenant_id, user_id) VALUES (lower(p_email), p_tenant, p_user)
            ON CONFLICT (email) DO NOTHING RETURNING true
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION platform_claim_api_key_prefix(p_prefix text, p_tenant uuid, p_key uuid) RETURNS boolean
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            INSERT INTO {SCHEMA}.api_key_prefixes (prefix, tenant_id, key_id) VALUES (p_prefix, p_tenant, p_key)
            ON CONFLICT (prefix) DO NOTHING RETURNING true
        $$
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION auth_find_user(p_email text)
        RETURNS TABLE (tenant_id uuid, user_id uuid, password_hash text, is_active boolean)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT u.tenant_id, u.id, u.password_hash, u.is_active
              FROM {SCHEMA}.user_emails e
              JOIN public.users u ON u.tenant_id = e.tenant_id AND u.id = e.user_id
              WHERE e.email = lower(p_email) $$
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION auth_find_api_key(p_prefix text)
        RETURNS TABLE (tenant_id uuid, key_id uuid, key_hash bytea)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT k.tenant_id, k.id, k.key_hash
              FROM {SCHEMA}.api_key_prefixes p
              JOIN public.api_keys k ON k.tenant_id = p.tenant_id AND k.id = p.key_id
              WHERE p.prefix = p_prefix AND k.revoked_at IS NULL $$
        """
    )
    for fn in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")


def downgrade() -> None:
    for fn in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION auth_find_user(p_email text)
        RETURNS TABLE (tenant_id uuid, user_id uuid, password_hash text, is_active boolean)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT u.tenant_id, u.id, u.password_hash, u.is_active
              FROM public.users u WHERE lower(u.email) = lower(p_email) $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION auth_find_api_key(p_prefix text)
        RETURNS TABLE (tenant_id uuid, key_id uuid, key_hash bytea)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT k.tenant_id, k.id, k.key_hash FROM public.api_keys k
              WHERE k.prefix = p_prefix AND k.revoked_at IS NULL $$
        """
    )
    op.execute("DROP INDEX IF EXISTS ix_users_email")
    op.execute("ALTER TABLE api_keys ADD CONSTRAINT uq_api_keys_prefix UNIQUE (prefix)")
    op.execute("CREATE UNIQUE INDEX uq_users_email ON users (lower(email))")
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
