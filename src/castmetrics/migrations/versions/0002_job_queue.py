"""Job queue: procrastinate's schema on the same database.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The SQL is procrastinate's own ``schema.sql`` for the pinned 3.10 series. Upgrading procrastinate
past 3.10 means a new revision applying its migration files, never editing this one.
"""

from __future__ import annotations

import procrastinate
from alembic import op
from procrastinate.schema import SchemaManager

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

EXPECTED_SERIES = "3.10."


def upgrade() -> None:
    version = getattr(procrastinate, "__version__", "")
    if not version.startswith(EXPECTED_SERIES):
        raise RuntimeError(f"procrastinate {version} installed; revision 0002 applies the {EXPECTED_SERIES}x schema")
    op.get_bind().exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))


def downgrade() -> None:
    op.execute(
        """
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate%' LOOP
                EXECUTE 'DROP FUNCTION ' || r.sig || ' CASCADE';
            END LOOP;
            FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.relname);
            END LOOP;
            FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                     WHERE n.nspname = 'public' AND t.typtype = 'e' AND t.typname LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname);
            END LOOP;
        END $$
        """
    )
