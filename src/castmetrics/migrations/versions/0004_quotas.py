"""Quotas: thresholds reached per tenant, quota and period.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE quota_thresholds (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_quota_thresholds_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            quota text NOT NULL,
            period text NOT NULL,
            threshold integer NOT NULL CONSTRAINT ck_quota_thresholds_threshold CHECK (threshold BETWEEN 1 AND 100),
            reached_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_quota_thresholds PRIMARY KEY (tenant_id, quota, period, threshold)
        )
        """
    )
    enable_tenant_rls(op.get_bind(), "quota_thresholds")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS quota_thresholds")
