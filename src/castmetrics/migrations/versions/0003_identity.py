"""Identity: users, permissions, roles, refresh tokens, API keys, login throttle, email outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RESOURCES = (
    "tenant", "users", "roles", "api_keys", "podcasts", "episodes", "sponsors", "campaigns", "bookings",
    "events", "analytics", "attribution", "workflows", "feature_flags", "billing", "audit_log",
)  # fmt: skip
ACTIONS = ("create", "read", "update", "delete")


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(
        """
        CREATE TABLE users (
            tenant_id uuid NOT NULL CONSTRAINT fk_users_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            email text NOT NULL CONSTRAINT ck_users_email CHECK (length(email) <= 320 AND email LIKE '_%@_%'),
            password_hash text,
            name text NOT NULL CONSTRAINT ck_users_name CHECK (length(name) BETWEEN 1 AND 200),
            email_verified boolean NOT NULL DEFAULT false,
            is_active boolean NOT NULL DEFAULT true,
            stripe_customer_id text,
            stripe_subscription_id text,
            last_login_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_users PRIMARY KEY (tenant_id, id)
        )
        """
    )
    # Email is unique across the whole system, whatever its case. (On Citus this index would move to
    # a reference table of addresses: a distributed table cannot hold a unique key without tenant_id.)
    op.execute("CREATE UNIQUE INDEX uq_users_email ON users (lower(email))")
    enable_tenant_rls(bind, "users")

    op.execute(
        """
        CREATE TABLE permissions (
            name text PRIMARY KEY,
            resource text NOT NULL,
            action text NOT NULL,
            CONSTRAINT uq_permissions_resource_action UNIQUE (resource, action)
        )
        """
    )
    names = [(f"{r}:{a}", r, a) for r in RESOURCES for a in ACTIONS] + [("analytics:export", "analytics", "export")]
    values = ", ".join(f"('{n}', '{r}', '{a}')" for n, r, a in names)
    op.execute(f"INSERT INTO permissions (name, resource, action) VALUES {values}")

    op.execute(
        """
        CREATE TABLE roles (
            tenant_id uuid NOT NULL CONSTRAINT fk_roles_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            name text NOT NULL CONSTRAINT ck_roles_name CHECK (length(name) BETWEEN 1 AND 64),
            description text NOT NULL DEFAULT '',
            is_system boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_roles PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX uq_roles_name ON roles (tenant_id, lower(name))")
    enable_tenant_rls(bind, "roles")

    op.execute(
        """
        CREATE TABLE role_permissions (
            tenant_id uuid NOT NULL,
            role_id uuid NOT NULL,
            permission text NOT NULL CONSTRAINT fk_role_permissions_permission REFERENCES permissions (name),
            CONSTRAINT pk_role_permissions PRIMARY KEY (tenant_id, role_id, permission),
            CONSTRAINT fk_role_permissions_role FOREIGN KEY (tenant_id, role_id)
                REFERENCES roles (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    enable_tenant_rls(bind, "role_permissions")

    op.execute(
        """
        CREATE TABLE user_roles (
            tenant_id uuid NOT NULL,
            user_id uuid NOT NULL,
            role_id uuid NOT NULL,
            CONSTRAINT pk_user_roles PRIMARY KEY (tenant_id, user_id, role_id),
            CONSTRAINT fk_user_roles_user FOREIGN KEY (tenant_id, user_id)
                REFERENCES users (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_user_roles_role FOREIGN KEY (tenant_id, role_id)
                REFERENCES roles (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX ix_user_roles_role ON user_roles (tenant_id, role_id)")
    enable_tenant_rls(bind, "user_roles")

    op.execute(
        """
        CREATE TABLE refresh_tokens (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL,
            family_id uuid NOT NULL,
            token_hash bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            rotated_at timestamptz,
            revoked_at timestamptz,
            CONSTRAINT pk_refresh_tokens PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_refresh_tokens_user FOREIGN KEY (tenant_id, user_id)
                REFERENCES users (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX ix_refresh_tokens_family ON refresh_tokens (tenant_id, family_id)")
    op.execute("CREATE INDEX ix_refresh_tokens_user ON refresh_tokens (tenant_id, user_id)")
    enable_tenant_rls(bind, "refresh_tokens")

    op.execute(
        """
        CREATE TABLE api_keys (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL,
            name text NOT NULL CONSTRAINT ck_api_keys_name CHECK (length(name) BETWEEN 1 AND 100),
            prefix text NOT NULL CONSTRAINT uq_api_keys_prefix UNIQUE,
            key_hash bytea NOT NULL,
            scopes text[] NOT NULL CONSTRAINT ck_api_keys_scopes
                CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'read', 'admin']),
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at timestamptz,
            CONSTRAINT pk_api_keys PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_api_keys_user FOREIGN KEY (tenant_id, user_id)
                REFERENCES users (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    enable_tenant_rls(bind, "api_keys")

    op.execute(
        """
        CREATE TABLE user_metrics (
            tenant_id uuid NOT NULL,
            user_id uuid NOT NULL,
            day date NOT NULL,
            logins integer NOT NULL DEFAULT 0,
            api_calls integer NOT NULL DEFAULT 0,
            CONSTRAINT pk_user_metrics PRIMARY KEY (tenant_id, user_id, day),
            CONSTRAINT fk_user_metrics_user FOREIGN KEY (tenant_id, user_id)
                REFERENCES users (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    enable_tenant_rls(bind, "user_metrics")

    # Failed-login bookkeeping, keyed by a hash of the email or client address (never the raw value).
    op.execute(
        """
        CREATE TABLE auth_throttle (
            key text PRIMARY KEY,
            failures integer NOT NULL DEFAULT 0,
            window_started_at timestamptz NOT NULL DEFAULT now(),
            blocked_until timestamptz
        )
        """
    )

    op.execute(
        """
        CREATE TABLE emails (
            tenant_id uuid NOT NULL CONSTRAINT fk_emails_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            kind text NOT NULL,
            to_address text NOT NULL,
            subject text NOT NULL,
            body text NOT NULL,
            status text NOT NULL DEFAULT 'pending'
                CONSTRAINT ck_emails_status CHECK (status IN ('pending', 'sent', 'logged', 'failed')),
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            sent_at timestamptz,
            CONSTRAINT pk_emails PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute("CREATE INDEX ix_emails_pending ON emails (tenant_id, created_at) WHERE status = 'pending'")
    enable_tenant_rls(bind, "emails")

    # Narrow cross-tenant paths (SECURITY DEFINER, fixed search_path, not executable by PUBLIC).
    op.execute(
        """
        CREATE FUNCTION auth_find_user(p_email text)
        RETURNS TABLE (tenant_id uuid, user_id uuid, password_hash text, is_active boolean)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT u.tenant_id, u.id, u.password_hash, u.is_active
              FROM public.users u WHERE lower(u.email) = lower(p_email) $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION auth_find_api_key(p_prefix text)
        RETURNS TABLE (tenant_id uuid, key_id uuid, key_hash bytea)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT k.tenant_id, k.id, k.key_hash FROM public.api_keys k
              WHERE k.prefix = p_prefix AND k.revoked_at IS NULL $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION emails_pending_tenants() RETURNS SETOF uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT DISTINCT tenant_id FROM public.emails WHERE status = 'pending' $$
        """
    )
    for fn in ("auth_find_user(text)", "auth_find_api_key(text)", "emails_pending_tenants()"):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")


def downgrade() -> None:
    for fn in ("auth_find_user(text)", "auth_find_api_key(text)", "emails_pending_tenants()"):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    tables = (
        "emails", "auth_throttle", "user_metrics", "api_keys", "refresh_tokens", "user_roles",
        "role_permissions", "roles", "permissions", "users",
    )  # fmt: skip
    for table in tables:
        op.execute(f"DROP TABLE IF EXISTS {table}")
