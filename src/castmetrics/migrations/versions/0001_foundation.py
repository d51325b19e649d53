"""Foundation: tenants, outbox, audit log, row-level security, narrow definer functions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenants (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL CONSTRAINT ck_tenants_name CHECK (length(name) BETWEEN 1 AND 200),
            slug varchar(63) NOT NULL CONSTRAINT uq_tenants_slug UNIQUE
                CONSTRAINT ck_tenants_slug CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
            domain text CONSTRAINT uq_tenants_domain UNIQUE
                CONSTRAINT ck_tenants_domain CHECK (domain = lower(domain)),
            subscription_tier text NOT NULL DEFAULT 'free'
                CONSTRAINT ck_tenants_tier CHECK (subscription_tier IN ('free', 'pro', 'enterprise')),
            status text NOT NULL DEFAULT 'active'
                CONSTRAINT ck_tenants_status CHECK (status IN ('active', 'suspended', 'cancelled')),
            subscription_status text NOT NULL DEFAULT 'none',
            billing_email text,
            time_zone text NOT NULL DEFAULT 'UTC',
            metadata jsonb NOT NULL DEFAULT '{}'::jsonb
                CONSTRAINT ck_tenants_metadata CHECK (jsonb_typeof(metadata) = 'object'),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # tenants has no tenant_id: a tenant context sees its own row and nothing else.
    enable_tenant_rls(op.get_bind(), "tenants", "id = NULLIF(current_setting('app.tenant_id', true), '')::uuid")

    op.execute(
        """
        CREATE TABLE outbox_events (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_outbox_events_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            event_type text NOT NULL
                CONSTRAINT ck_outbox_events_type CHECK (event_type ~ '^[a-z_]+(\\.[a-z_]+)+$'),
            payload jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            published_at timestamptz,
            CONSTRAINT pk_outbox_events PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_outbox_events_pending ON outbox_events (tenant_id, created_at) WHERE published_at IS NULL"
    )
    enable_tenant_rls(op.get_bind(), "outbox_events")

    op.execute(
        """
        CREATE TABLE audit_log (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_audit_log_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            occurred_at timestamptz NOT NULL DEFAULT now(),
            actor_type text NOT NULL CONSTRAINT ck_audit_log_actor_type
                CHECK (actor_type IN ('user', 'api_key', 'platform_admin', 'system')),
            actor_id text,
            action text NOT NULL,
            entity_type text NOT NULL,
            entity_id text,
            changes jsonb NOT NULL DEFAULT '{}'::jsonb,
            request_id text,
            CONSTRAINT pk_audit_log PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute("CREATE INDEX ix_audit_log_recent ON audit_log (tenant_id, occurred_at DESC, id DESC)")
    enable_tenant_rls(op.get_bind(), "audit_log")

    # Narrow cross-tenant path for the outbox publisher: which tenants have unpublished events.
    # It reveals tenant ids only, never rows. Runs as the owner (superuser or BYPASSRLS).
    op.execute(
        """
        CREATE FUNCTION outbox_pending_tenants() RETURNS SETOF uuid
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        AS $$ SELECT DISTINCT tenant_id FROM public.outbox_events WHERE published_at IS NULL $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION outbox_pending_tenants() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS outbox_pending_tenants()")
    op.execute("DROP TABLE IF EXISTS audit_log")
    op.execute("DROP TABLE IF EXISTS outbox_events")
    op.execute("DROP TABLE IF EXISTS tenants")
