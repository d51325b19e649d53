"""Catalog: podcasts, episodes, feed syncs and the last fetched feed of each podcast.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(
        """
        CREATE TABLE podcasts (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_podcasts_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            name text NOT NULL CONSTRAINT ck_podcasts_name CHECK (length(name) BETWEEN 1 AND 500),
            description text,
            rss_feed_url text CONSTRAINT ck_podcasts_rss_feed_url CHECK (rss_feed_url ~ '^https?://'),
            website_url text,
            image_url text,
            author text,
            language text,
            podcast_guid text,
            sync_interval_minutes integer NOT NULL DEFAULT 60
                CONSTRAINT ck_podcasts_sync_interval CHECK (sync_interval_minutes BETWEEN 5 AND 10080),
            next_sync_at timestamptz,
            feed_etag text,
            feed_last_modified text,
            last_synced_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_podcasts PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute("CREATE INDEX ix_podcasts_recent ON podcasts (tenant_id, created_at DESC, id DESC)")
    op.execute("CREATE INDEX ix_podcasts_due ON podcasts (next_sync_at) WHERE rss_feed_url IS NOT NULL")
    enable_tenant_rls(bind, "podcasts")

    op.execute(
        """
        CREATE TABLE episodes (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            podcast_id uuid NOT NULL,
            guid text NOT NULL CONSTRAINT ck_episodes_guid CHECK (length(guid) BETWEEN 1 AND 2000),
            title text NOT NULL CONSTRAINT ck_episodes_title CHECK (length(title) BETWEEN 1 AND 1000),
            description text,
            episode_number integer,
            season integer,
            published_at timestamptz,
            duration_seconds integer CONSTRAINT ck_episodes_duration CHECK (duration_seconds >= 0),
            audio_url text,
            audio_type text,
            audio_length_bytes bigint,
            explicit boolean,
            image_url text,
            in_feed boolean NOT NULL DEFAULT true,
            left_feed_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_episodes PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_episodes_podcast FOREIGN KEY (tenant_id, podcast_id)
                REFERENCES podcasts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT uq_episodes_guid UNIQUE (tenant_id, podcast_id, guid)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_episodes_published ON episodes (tenant_id, podcast_id, published_at DESC NULLS LAST, id DESC)"
    )
    enable_tenant_rls(bind, "episodes")

    op.execute(
        """
        CREATE TABLE podcast_syncs (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            podcast_id uuid NOT NULL,
            started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            duration_ms integer NOT NULL DEFAULT 0,
            trigger text NOT NULL CONSTRAINT ck_podcast_syncs_trigger CHECK (trigger IN ('api', 'cli', 'schedule')),
            http_status integer,
            outcome text NOT NULL
                CONSTRAINT ck_podcast_syncs_outcome CHECK (outcome IN ('ok', 'not_modified', 'failed')),
            created integer NOT NULL DEFAULT 0,
            updated integer NOT NULL DEFAULT 0,
            unchanged integer NOT NULL DEFAULT 0,
            left_feed integer NOT NULL DEFAULT 0,
            warnings jsonb NOT NULL DEFAULT '[]'::jsonb,
            error text,
            CONSTRAINT pk_podcast_syncs PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_podcast_syncs_podcast FOREIGN KEY (tenant_id, podcast_id)
                REFERENCES podcasts (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX ix_podcast_syncs_recent ON podcast_syncs (tenant_id, podcast_id, started_at DESC)")
    enable_tenant_rls(bind, "podcast_syncs")

    # The last fetched feed document, for the tracked feed (served with enclosures rewritten).
    op.execute(
        """
        CREATE TABLE podcast_feeds (
            tenant_id uuid NOT NULL,
            podcast_id uuid NOT NULL,
            body bytea NOT NULL,
            content_type text,
            fetched_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_podcast_feeds PRIMARY KEY (tenant_id, podcast_id),
            CONSTRAINT fk_podcast_feeds_podcast FOREIGN KEY (tenant_id, podcast_id)
                REFERENCES podcasts (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    enable_tenant_rls(bind, "podcast_feeds")

    # Narrow cross-tenant paths. The public tracked feed knows only a podcast id; the scheduler needs
    # the podcasts that are due, whatever their tenant.
    op.execute(
        """
        CREATE FUNCTION catalog_tracked_feed(p_podcast_id uuid)
        RETURNS TABLE (tenant_id uuid, tenant_slug text, body bytea, content_type text)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT f.tenant_id, t.slug::text, f.body, f.content_type
              FROM public.podcast_feeds f JOIN public.tenants t ON t.id = f.tenant_id
              WHERE f.podcast_id = p_podcast_id AND t.status <> 'cancelled' $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION catalog_due_podcasts(p_limit integer)
        RETURNS TABLE (tenant_id uuid, podcast_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT p.tenant_id, p.id FROM public.podcasts p JOIN public.tenants t ON t.id = p.tenant_id
              WHERE p.rss_feed_url IS NOT NULL AND t.status = 'active'
                AND (p.next_sync_at IS NULL OR p.next_sync_at <= now())
              ORDER BY p.next_sync_at NULLS FIRST LIMIT p_limit $$
        """
    )
    for fn in ("catalog_tracked_feed(uuid)", "catalog_due_podcasts(integer)"):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")


def downgrade() -> None:
    for fn in ("catalog_tracked_feed(uuid)", "catalog_due_podcasts(integer)"):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    for table in ("podcast_feeds", "podcast_syncs", "episodes", "podcasts"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
