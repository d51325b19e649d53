"""Download requests by client (issue 19 item 2): an index on ``(tenant_id, client_hash)`` on every day
partition of ``download_requests`` (declared on the parent, so partitions created later get it too).

The incremental download refresh (``measurement.counting.add``) works out again the downloads of the
clients a new batch names from their requests of the day, and adds the difference to the rollups: one
lookup per client through this index, whatever the day already holds. (The client hash is salted per
day, so a day partition holds each client under one hash.)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_download_requests_client ON download_requests (tenant_id, client_hash)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_download_requests_client")
