"""Idempotency keys: the first answer to a POST with an Idempotency-Key, replayed on repeats.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE idempotency_keys (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_idempotency_keys_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            key text NOT NULL CONSTRAINT ck_idempotency_keys_key CHECK (length(key) BETWEEN 1 AND 255),
            request_hash bytea NOT NULL,
            status_code integer,
            response jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_idempotency_keys PRIMARY KEY (tenant_id, key)
        )
        """
    )
    op.execute("CREATE INDEX ix_idempotency_keys_created ON idempotency_keys (created_at)")
    enable_tenant_rls(op.get_bind(), "idempotency_keys")
    # Narrow cross-tenant path for the pruning job: deletes expired keys, answers how many.
    op.execute(
        """
        CREATE FUNCTION prune_idempotency_keys(p_older_than interval) RETURNS bigint
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ WITH gone AS (DELETE FROM public.idempotency_keys WHERE created_at < now() - p_older_than
                            RETURNING 1) SELECT count(*) FROM gone $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION prune_idempotency_keys(interval) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS prune_idempotency_keys(interval)")
    op.execute("DROP TABLE IF EXISTS idempotency_keys")
