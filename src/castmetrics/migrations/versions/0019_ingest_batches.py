"""Ingestion batches: each committed batch has an id, on its rows and on its invalidation-log rows (issue 19).

* ``ingest_batches`` (a sequence) numbers batches. The writer (``events.writer.write``) takes one number per
  transaction and keeps it in the transaction-local setting ``castmetrics.ingest_batch``; the new columns
  default to that setting, so the rows a batch COPYs, the rows it upserts through the parent and the log
  rows it notes all carry the same id without any caller listing the column. Outside a batch (older rows,
  rows noted by ``episodes_changed``) the setting is empty and the id is NULL: such a log row asks for the
  whole day to be recounted.
* ``listener_events.batch_id`` and ``download_requests.batch_id`` with an index on ``(tenant_id, batch_id)``
  on every day partition (declared on the parent, so partitions created later get it too): the refresh
  reads exactly a batch's rows of one day, whatever the day already holds.
* ``rollup_invalidations.batch_id`` and ``.events`` (the rows that batch stored on that day, when the
  writer knew it): a refresh cycle bounds the work it takes per tenant by these counts.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

BATCH = "nullif(current_setting('castmetrics.ingest_batch', true), '')::bigint"


def upgrade() -> None:
    op.execute("CREATE SEQUENCE ingest_batches AS bigint")
    for table in ("listener_events", "download_requests", "rollup_invalidations"):
        # Added without a default first: the rows already there keep NULL (no rewrite), new rows take the batch.
        op.execute(f"ALTER TABLE {table} ADD COLUMN batch_id bigint")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN batch_id SET DEFAULT {BATCH}")
    op.execute("ALTER TABLE rollup_invalidations ADD COLUMN events integer")
    op.execute("CREATE INDEX ix_listener_events_batch ON listener_events (tenant_id, batch_id)")
    op.execute("CREATE INDEX ix_download_requests_batch ON download_requests (tenant_id, batch_id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_download_requests_batch")
    op.execute("DROP INDEX IF EXISTS ix_listener_events_batch")
    op.execute("ALTER TABLE rollup_invalidations DROP COLUMN IF EXISTS events")
    for table in ("rollup_invalidations", "download_requests", "listener_events"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS batch_id")
    op.execute("DROP SEQUENCE IF EXISTS ingest_batches")
