"""Retention counts days in UTC, whatever the connection's time zone.

``castmetrics_event_partitions_drop`` capped its cutoff with ``current_date``, which follows the session's
``TimeZone``: on a server set west of UTC it kept a day more for part of the day, and a session east of
UTC could drop a day the operator's retention keeps. Partitions are UTC days, so the cap is now the UTC
date. The function is replaced in place (its owner and grants stay).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

PARTITION_SCHEMA = "castmetrics_events"


def _drop_function(today: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION castmetrics_event_partitions_drop(p_before date) RETURNS SETOF text
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
        DECLARE
            part record;
            keep_days integer;
        BEGIN
            -- The floor is the operator's retention, set by the migration role: a caller (the runtime
            -- role) never drops more than that, whatever date it passes (a later date is clamped).
            SELECT coalesce(max(value::integer), 730) INTO keep_days
              FROM public.castmetrics_settings WHERE name = 'event_retention_days';
            IF p_before IS NULL THEN
                RAISE EXCEPTION 'a day is required' USING ERRCODE = 'invalid_parameter_value';
            END IF;
            p_before := least(p_before, {today} - (keep_days - 1));
            PERFORM pg_advisory_xact_lock(hashtext('castmetrics:event_partitions'));
            FOR part IN
                SELECT c.relname FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = '{PARTITION_SCHEMA}'
                  AND i.inhparent IN (SELECT partrelid FROM pg_partitioned_table)
                  AND c.relname ~ '_p[0-9]{{8}}$'
                  AND to_date(right(c.relname, 8), 'YYYYMMDD') < p_before
                ORDER BY c.relname
            LOOP
                EXECUTE format('DROP TABLE {PARTITION_SCHEMA}.%I', part.relname);
                RETURN NEXT part.relname;
            END LOOP;
        END
        $$
        """


def upgrade() -> None:
    op.execute(_drop_function("CAST(now() AT TIME ZONE 'UTC' AS date)"))


def downgrade() -> None:
    op.execute(_drop_function("current_date"))
