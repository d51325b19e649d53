"""Email preferences: one row per user that changed a default, with the categories they receive.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows are created lazily: a user without one has exactly these column defaults.
    op.execute(
        """
        CREATE TABLE email_preferences (
            tenant_id uuid NOT NULL,
            user_id uuid NOT NULL,
            weekly_digest boolean NOT NULL DEFAULT true,
            campaign_alerts boolean NOT NULL DEFAULT true,
            product_news boolean NOT NULL DEFAULT false,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_email_preferences PRIMARY KEY (tenant_id, user_id),
            CONSTRAINT fk_email_preferences_user FOREIGN KEY (tenant_id, user_id)
                REFERENCES users (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    enable_tenant_rls(op.get_bind(), "email_preferences")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS email_preferences")
