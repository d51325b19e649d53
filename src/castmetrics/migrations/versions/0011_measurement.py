"""Measurement: download requests from the prefix (partitioned by day), download rollups, sketches.

``download_requests`` joins the event tables in the day-partition scheme of revision 0010 (whose
partition functions cover every partitioned table of the schema).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(
        """
        CREATE TABLE download_requests (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            requested_at timestamptz NOT NULL,
            episode_id uuid,
            url text NOT NULL,
            client_hash bytea NOT NULL,
            user_agent text NOT NULL,
            referer text,
            method text NOT NULL,
            range_header text,
            range_bytes bigint,
            is_probe boolean NOT NULL,
            is_bot boolean NOT NULL,
            agent_type text,
            app text,
            device text,
            device_category text,
            os text,
            browser text,
            country text,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_download_requests PRIMARY KEY (tenant_id, id, requested_at)
        ) PARTITION BY RANGE (requested_at)
        """
    )
    enable_tenant_rls(bind, "download_requests")
    # Partitions for the days the event tables already have.
    op.execute(
        """
        DO $$
        DECLARE
            first_day date;
            last_day date;
        BEGIN
            SELECT min(to_date(right(c.relname, 8), 'YYYYMMDD')), max(to_date(right(c.relname, 8), 'YYYYMMDD'))
              INTO first_day, last_day
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'public.listener_events'::regclass;
            IF first_day IS NOT NULL THEN
                WHILE first_day <= last_day LOOP
                    PERFORM castmetrics_event_partitions_ensure(first_day, least(first_day + 999, last_day));
                    first_day := first_day + 1000;
                END LOOP;
            END IF;
        END
        $$
        """
    )

    # IAB downloads per tenant, UTC day, episode, country, app and device (the counting of
    # docs/measurement.md, recomputed per invalidated day). Unknown values are 'Unknown'.
    op.execute(
        """
        CREATE TABLE download_daily (
            tenant_id uuid NOT NULL,
            day date NOT NULL,
            episode_id uuid NOT NULL,
            country text NOT NULL,
            app text NOT NULL,
            device text NOT NULL,
            device_category text NOT NULL,
            downloads bigint NOT NULL,
            CONSTRAINT pk_download_daily
                PRIMARY KEY (tenant_id, day, episode_id, country, app, device, device_category)
        )
        """
    )
    op.execute("CREATE INDEX ix_download_daily_episode ON download_daily (tenant_id, episode_id, day)")
    enable_tenant_rls(bind, "download_daily")
    # Downloads and exact daily listeners per value of a dimension (country, app, device,
    # device_category) of an episode, a podcast or the tenant (scope_id all zeros).
    op.execute(
        """
        CREATE TABLE download_breakdown_daily (
            tenant_id uuid NOT NULL,
            day date NOT NULL,
            scope_id uuid NOT NULL,
            dimension text NOT NULL,
            key text NOT NULL,
            downloads bigint NOT NULL,
            listeners bigint NOT NULL,
            CONSTRAINT pk_download_breakdown_daily PRIMARY KEY (tenant_id, scope_id, dimension, day, key)
        )
        """
    )
    enable_tenant_rls(bind, "download_breakdown_daily")
    # Exact daily listeners (distinct clients with a download) of an episode, a podcast, or the
    # tenant (scope_id all zeros).
    op.execute(
        """
        CREATE TABLE download_listeners_daily (
            tenant_id uuid NOT NULL,
            day date NOT NULL,
            scope_id uuid NOT NULL,
            listeners bigint NOT NULL,
            CONSTRAINT pk_download_listeners_daily PRIMARY KEY (tenant_id, scope_id, day)
        )
        """
    )
    enable_tenant_rls(bind, "download_listeners_daily")
    # HyperLogLog sketches of the clients with a download, per day and scope, merged for weeks and
    # months. Fed by the recorder with a keyed client hash that is stable across days; a sketch keeps
    # no hashes, so nothing in it leads back to a client.
    op.execute(
        """
        CREATE TABLE download_sketches (
            tenant_id uuid NOT NULL,
            day date NOT NULL,
            scope_id uuid NOT NULL,
            sketch bytea NOT NULL,
            CONSTRAINT pk_download_sketches PRIMARY KEY (tenant_id, scope_id, day)
        )
        """
    )
    enable_tenant_rls(bind, "download_sketches")
    # The prefix knows only the slug: the recorder resolves it without a tenant context.
    op.execute(
        """
        CREATE FUNCTION measurement_tenants(p_slugs text[]) RETURNS TABLE (slug text, id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
            SELECT t.slug, t.id FROM public.tenants t WHERE t.slug = ANY (p_slugs) AND t.status <> 'cancelled'
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION measurement_tenants(text[]) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS measurement_tenants(text[])")
    for table in (
        "download_sketches",
        "download_listeners_daily",
        "download_breakdown_daily",
        "download_daily",
        "download_requests",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
