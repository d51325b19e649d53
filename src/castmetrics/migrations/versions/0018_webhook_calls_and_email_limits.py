"""Webhook calls outside transactions, and email limits (issue 26 items 1 and 5).

* ``workflow_executions.calling_until``: while a webhook step's request is in flight, with no transaction
  open, until when it holds one of its tenant's call slots (``CASTMETRICS_WORKFLOW_WEBHOOKS_PER_TENANT``).
  Cleared when the answer is recorded; a worker that dies leaves it to run out. A partial index holds only
  the rows with a value, so counting a tenant's calls in flight reads a handful of entries.
* ``ix_emails_recent`` on ``emails (tenant_id, created_at)``: the tier's ``emails_per_day`` quota counts
  today's workflow emails, and verification and password-reset emails are limited per address per hour;
  both read only the recent end of the tenant's emails instead of all of them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE workflow_executions ADD COLUMN calling_until timestamptz")
    op.execute(
        "CREATE INDEX ix_workflow_executions_calling ON workflow_executions (tenant_id, calling_until)"
        " WHERE calling_until IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_emails_recent ON emails (tenant_id, created_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_emails_recent")
    op.execute("DROP INDEX IF EXISTS ix_workflow_executions_calling")
    op.execute("ALTER TABLE workflow_executions DROP COLUMN IF EXISTS calling_until")
