"""Statistics that keep up with a burst, and day bitmaps that are not rewritten whole (issue 19).

``castmetrics_analyze_grown()`` analyzes the raw day
partitions the rollups are about to read, and ``listener_keys``, when they have at least doubled (and by
10,000 rows or more) since they were last analyzed. Autovacuum does the same about a minute later; until
then a partition that held 56 k rows of one tenant when analyzed and now holds 2 M of another is planned as
if that tenant had none, and a refresh cycle that should take 0.1 s took 15–50 s (nested loops over every
listener number of the tenant). The refresh job calls it once per cycle, in a transaction of its own; two
workers never analyze at once (the second skips).

``listener_daily.recent``: the listeners a day's scope gained since its bitmap ``listeners`` was last
written whole, as a small Roaring bitmap (NULL when none). A refresh cycle rewrote every touched scope's
whole day bitmap (1.4 MB a cycle for a day of 2 M events over 50 episodes); it now writes the few new
listeners into ``recent`` and folds them into ``listeners`` only once ``recent`` outgrows a small bound
(``events.rollups.FOLD_BYTES``). A day's listeners are ``listeners`` OR ``recent``; ``unique_listeners``
stays their exact count.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.roles import PARTITION_SCHEMA

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION castmetrics_analyze_grown() RETURNS text[]
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
        DECLARE
            rel regclass;
            analyzed text[] := '{{}}';
        BEGIN
            IF NOT pg_try_advisory_xact_lock(hashtext('castmetrics:analyze_grown')) THEN
                RETURN analyzed;
            END IF;
            FOR rel IN
                SELECT c.oid::regclass FROM pg_class c
                WHERE c.relkind = 'r'
                  AND pg_stat_get_mod_since_analyze(c.oid) >= 10000
                  AND pg_stat_get_mod_since_analyze(c.oid) > greatest(c.reltuples, 0)
                  AND (c.oid = 'public.listener_keys'::regclass
                       OR (c.relnamespace = '{PARTITION_SCHEMA}'::regnamespace AND c.relname IN (
                           SELECT t.parent || '_p' || to_char(d.day, 'YYYYMMDD')
                           FROM (SELECT DISTINCT day FROM public.rollup_invalidations) d,
                                unnest(ARRAY['listener_events', 'download_requests']) AS t(parent))))
                ORDER BY 1
            LOOP
                EXECUTE format('ANALYZE %s', rel);
                analyzed := analyzed || rel::text;
            END LOOP;
            RETURN analyzed;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION castmetrics_analyze_grown() FROM PUBLIC")
    op.execute("ALTER TABLE listener_daily ADD COLUMN recent bytea")


def downgrade() -> None:
    op.execute("ALTER TABLE listener_daily DROP COLUMN recent")
    op.execute("DROP FUNCTION IF EXISTS castmetrics_analyze_grown()")
