"""Feature flags (global defaults, per-tenant overrides) and platform administrators.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Platform-wide: the runtime role may read it (READ_ONLY_TABLES), only the owner changes it.
    op.execute(
        """
        CREATE TABLE feature_flags (
            name text PRIMARY KEY CONSTRAINT ck_feature_flags_name CHECK (name ~ '^[a-z][a-z0-9_]{1,62}$'),
            description text NOT NULL DEFAULT ''
                CONSTRAINT ck_feature_flags_description CHECK (length(description) <= 500),
            enabled boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE tenant_feature_flags (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_tenant_feature_flags_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            flag_name text NOT NULL
                CONSTRAINT fk_tenant_feature_flags_flag_name_feature_flags
                REFERENCES feature_flags (name) ON DELETE CASCADE,
            enabled boolean NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_tenant_feature_flags PRIMARY KEY (tenant_id, flag_name)
        )
        """
    )
    # Deleting a global flag cascades to its overrides: find them without scanning every tenant's.
    op.execute("CREATE INDEX ix_tenant_feature_flags_flag_name ON tenant_feature_flags (flag_name)")
    enable_tenant_rls(op.get_bind(), "tenant_feature_flags")
    op.execute(
        """
        INSERT INTO feature_flags (name, description, enabled)
        VALUES ('custom_roles', 'Tenants may define roles of their own', true)
        """
    )

    # Platform-wide and reached only through the owner's connection: the runtime role has no access
    # at all (NO_ACCESS_TABLES), so no tenant request can read an administrator's hash.
    op.execute(
        """
        CREATE TABLE platform_admins (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            email text NOT NULL CONSTRAINT ck_platform_admins_email CHECK (length(email) <= 320 AND email LIKE '_%@_%'),
            password_hash text NOT NULL,
            name text NOT NULL CONSTRAINT ck_platform_admins_name CHECK (length(name) BETWEEN 1 AND 200),
            created_at timestamptz NOT NULL DEFAULT now(),
            last_login_at timestamptz
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX uq_platform_admins_email ON platform_admins (lower(email))")


def downgrade() -> None:
    for table in ("platform_admins", "tenant_feature_flags", "feature_flags"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
