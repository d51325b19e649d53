"""Events: listener and attribution events partitioned by day, rollups, usage and the ingest bucket.

Partitions live in the schema ``castmetrics_events``. The runtime role reads and upserts through the
partitioned parents in ``public`` (row-level security applies there), and may only *append* to a
day partition directly (``INSERT``, no ``SELECT``): that is the fast COPY path, since PostgreSQL
refuses ``COPY FROM`` into a table with row-level security. A statement trigger with a transition
table on every partition refuses any row whose ``tenant_id`` is not the transaction's tenant, so
isolation of writes is still enforced by the database, not by the application alone.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LISTENER_TYPES = "'download', 'play', 'pause', 'resume', 'seek', 'skip', 'progress', 'complete'"
ATTRIBUTION_TYPES = "'impression', 'click', 'visit', 'signup', 'conversion'"
PARTITION_SCHEMA = "castmetrics_events"


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(f"CREATE SCHEMA {PARTITION_SCHEMA}")
    op.execute(
        f"""
        CREATE TABLE listener_events (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            episode_id uuid NOT NULL,
            listener_id text NOT NULL,
            event_type text NOT NULL CONSTRAINT ck_listener_events_type CHECK (event_type IN ({LISTENER_TYPES})),
            event_data jsonb,
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_listener_events PRIMARY KEY (tenant_id, id, occurred_at)
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    enable_tenant_rls(bind, "listener_events")
    op.execute(
        f"""
        CREATE TABLE attribution_events (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            campaign_id uuid NOT NULL,
            episode_id uuid,
            listener_id text NOT NULL,
            attribution_type text NOT NULL
                CONSTRAINT ck_attribution_events_type CHECK (attribution_type IN ({ATTRIBUTION_TYPES})),
            attribution_data jsonb,
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_attribution_events PRIMARY KEY (tenant_id, id, occurred_at)
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    enable_tenant_rls(bind, "attribution_events")

    # Operator settings the SECURITY DEFINER functions trust (the runtime role cannot read or write them).
    op.execute(
        """
        CREATE TABLE castmetrics_settings (
            name text NOT NULL CONSTRAINT pk_castmetrics_settings PRIMARY KEY,
            value text NOT NULL
        )
        """
    )

    # Fires once per statement that writes a partition directly (COPY); the parents' RLS covers the rest.
    op.execute(
        """
        CREATE FUNCTION castmetrics_events_check_tenant() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF EXISTS (
                SELECT 1 FROM new_rows
                WHERE tenant_id IS DISTINCT FROM NULLIF(current_setting('app.tenant_id', true), '')::uuid
            ) THEN
                RAISE EXCEPTION 'an event of another tenant was refused'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    # Creates the missing day partitions of every day-partitioned table in [p_from, p_to]. Owned by the
    # migration role; the runtime role calls it (start-up, the daily job, ingestion on demand).
    op.execute(
        f"""
        CREATE FUNCTION castmetrics_event_partitions_ensure(p_from date, p_to date) RETURNS integer
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
        DECLARE
            d date;
            parent text;
            part text;
            created integer := 0;
        BEGIN
            IF p_from IS NULL OR p_to IS NULL OR p_to < p_from OR p_to - p_from > 1000 THEN
                RAISE EXCEPTION 'partition range % to % is not accepted', p_from, p_to
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            PERFORM pg_advisory_xact_lock(hashtext('castmetrics:event_partitions'));
            d := p_from;
            WHILE d <= p_to LOOP
                -- Every day-partitioned table of the schema (events now, download requests later).
                FOREACH parent IN ARRAY ARRAY(
                    SELECT c.relname::text FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid
                    WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1
                ) LOOP
                    part := parent || '_p' || to_char(d, 'YYYYMMDD');
                    IF to_regclass('{PARTITION_SCHEMA}.' || part) IS NULL THEN
                        EXECUTE format(
                            'CREATE TABLE {PARTITION_SCHEMA}.%I PARTITION OF public.%I '
                            'FOR VALUES FROM (%L) TO (%L)',
                            part, parent, d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
                        EXECUTE format(
                            'CREATE TRIGGER check_tenant AFTER INSERT ON {PARTITION_SCHEMA}.%I '
                            'REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                            'EXECUTE FUNCTION public.castmetrics_events_check_tenant()', part);
                        created := created + 1;
                    END IF;
                END LOOP;
                d := d + 1;
            END LOOP;
            RETURN created;
        END
        $$
        """
    )
    # Drops the day partitions of every day-partitioned table before p_before, never one the operator's
    # retention keeps.
    op.execute(
        f"""
        CREATE FUNCTION castmetrics_event_partitions_drop(p_before date) RETURNS SETOF text
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
            p_before := least(p_before, current_date - (keep_days - 1));
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
    )

    # Rollups (the continuous aggregates): per tenant, day (UTC) and episode.
    op.execute(
        """
        CREATE TABLE listener_daily_rollups (
            tenant_id uuid NOT NULL,
            day date NOT NULL,
            episode_id uuid NOT NULL,
            events bigint NOT NULL DEFAULT 0,
            downloads bigint NOT NULL DEFAULT 0,
            plays bigint NOT NULL DEFAULT 0,
            pauses bigint NOT NULL DEFAULT 0,
            resumes bigint NOT NULL DEFAULT 0,
            seeks bigint NOT NULL DEFAULT 0,
            skips bigint NOT NULL DEFAULT 0,
            progresses bigint NOT NULL DEFAULT 0,
            completes bigint NOT NULL DEFAULT 0,
            unique_listeners bigint NOT NULL DEFAULT 0,
            listen_seconds numeric(20, 3) NOT NULL DEFAULT 0,
            refreshed_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_listener_daily_rollups PRIMARY KEY (tenant_id, day, episode_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_listener_daily_rollups_episode ON listener_daily_rollups (tenant_id, episode_id, day)")
    enable_tenant_rls(bind, "listener_daily_rollups")
    # Distinct listeners per day of a podcast, and of the whole tenant (podcast_id all zeros).
    op.execute(
        """
        CREATE TABLE listener_daily_uniques (
            tenant_id uuid NOT NULL,
            day date NOT NULL,
            podcast_id uuid NOT NULL,
            unique_listeners bigint NOT NULL,
            CONSTRAINT pk_listener_daily_uniques PRIMARY KEY (tenant_id, podcast_id, day)
        )
        """
    )
    enable_tenant_rls(bind, "listener_daily_uniques")
    # The invalidation log: each committed batch notes the days it wrote; a refresh recomputes them.
    op.execute(
        """
        CREATE TABLE rollup_invalidations (
            tenant_id uuid NOT NULL,
            id bigint GENERATED ALWAYS AS IDENTITY,
            day date NOT NULL,
            kind text NOT NULL DEFAULT 'listener'
                CONSTRAINT ck_rollup_invalidations_kind CHECK (kind IN ('listener', 'download')),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_rollup_invalidations PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute("CREATE INDEX ix_rollup_invalidations_day ON rollup_invalidations (tenant_id, day)")
    enable_tenant_rls(bind, "rollup_invalidations")
    op.execute(
        """
        CREATE FUNCTION rollup_pending_tenants() RETURNS SETOF uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
            SELECT DISTINCT tenant_id FROM public.rollup_invalidations
        $$
        """
    )

    for fn in (
        "castmetrics_event_partitions_ensure(date, date)",
        "castmetrics_event_partitions_drop(date)",
        "rollup_pending_tenants()",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")

    # Events accepted per calendar month (UTC) for the monthly quota.
    op.execute(
        """
        CREATE TABLE usage_monthly (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_usage_monthly_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            month date NOT NULL,
            events bigint NOT NULL DEFAULT 0,
            CONSTRAINT pk_usage_monthly PRIMARY KEY (tenant_id, month)
        )
        """
    )
    enable_tenant_rls(bind, "usage_monthly")
    # The per-tenant ingest token bucket.
    op.execute(
        """
        CREATE TABLE ingest_buckets (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_ingest_buckets_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            tokens double precision NOT NULL,
            refilled_at timestamptz NOT NULL,
            CONSTRAINT pk_ingest_buckets PRIMARY KEY (tenant_id)
        )
        """
    )
    enable_tenant_rls(bind, "ingest_buckets")


def downgrade() -> None:
    for table in (
        "ingest_buckets",
        "usage_monthly",
        "rollup_invalidations",
        "listener_daily_uniques",
        "listener_daily_rollups",
        "attribution_events",
        "listener_events",
        "castmetrics_settings",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS rollup_pending_tenants()")
    op.execute("DROP FUNCTION IF EXISTS castmetrics_event_partitions_drop(date)")
    op.execute("DROP FUNCTION IF EXISTS castmetrics_event_partitions_ensure(date, date)")
    op.execute("DROP FUNCTION IF EXISTS castmetrics_events_check_tenant()")
    op.execute(f"DROP SCHEMA IF EXISTS {PARTITION_SCHEMA} CASCADE")
