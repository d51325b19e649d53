"""The measurement prefix's tenant directory: every process knows the tenants' slugs and enclosure hosts.

The prefix answers from memory (it never waits on the database) and refuses a slug that is no tenant's and a
browser navigation to a host none of the tenant's episodes use. Each API process keeps both in memory
(``measurement.tenant_directory``), loaded through two narrow definer functions and kept current by
notifications on the ``castmetrics_prefix`` channel, sent by triggers whatever path changes the rows
(sign-up, the CLI, an operator's SQL, a feed sync):

* ``measurement_prefix_tenants()``: every tenant's id and slug (slugs are public: they are in every prefix
  URL). Cancelled tenants included: their listeners' players keep getting the audio (nothing is recorded).
* ``measurement_enclosure_hosts(tenants)``: per tenant, the hosts its episodes' audio URLs name: the first
  host, and each dotted path segment but the file name (the hosts of a prefix chain such as
  ``dts.podtrac.com/redirect.mp3/media.example.com/e.mp3``), lower-cased; all tenants when ``tenants`` is
  null.
* A tenant inserted, deleted or given another slug notifies ``{"tenant": id, "slug": slug}`` (slug null
  when deleted); ``TRUNCATE tenants`` notifies ``{"reload": true}``; an episode inserted with an audio URL or
  whose audio URL changes notifies ``{"hosts": tenant_id}`` (identical notifications of one transaction are
  delivered once, so a feed sync of a thousand episodes sends one).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

CHANNEL = "castmetrics_prefix"
# A path segment that names a host: dotted labels, an optional port.
HOST_SEGMENT = r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:[0-9]{1,5})?$"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION measurement_prefix_tenants() RETURNS TABLE (slug text, id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
            SELECT t.slug, t.id FROM public.tenants t
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION measurement_prefix_tenants() FROM PUBLIC")
    # Encoded slashes and colons are decoded first: some prefixes embed the next URL percent-encoded.
    op.execute(
        f"""
        CREATE FUNCTION measurement_enclosure_hosts(p_tenants uuid[]) RETURNS TABLE (tenant_id uuid, host text)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
            SELECT DISTINCT e.tenant_id, lower(part.segment)
            FROM public.episodes e
            CROSS JOIN LATERAL (
                SELECT s.segment, s.n, count(*) OVER () AS parts
                FROM unnest(string_to_array(
                    split_part(split_part(regexp_replace(regexp_replace(regexp_replace(
                        e.audio_url, '^[A-Za-z][A-Za-z0-9+.-]*://', ''), '%2[Ff]', '/', 'g'), '%3[Aa]', ':', 'g'),
                        '?', 1), '#', 1),
                    '/')) WITH ORDINALITY AS s(segment, n)
            ) part
            WHERE e.audio_url IS NOT NULL
              AND (p_tenants IS NULL OR e.tenant_id = ANY (p_tenants))
              AND part.segment <> ''
              AND (part.n = 1 OR (part.n < part.parts AND part.segment ~ '{HOST_SEGMENT}'))
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION measurement_enclosure_hosts(uuid[]) FROM PUBLIC")
    op.execute(
        f"""
        CREATE FUNCTION measurement_prefix_notify_tenant() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('{CHANNEL}', '{{"reload": true}}');
            ELSIF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('{CHANNEL}', json_build_object('tenant', OLD.id, 'slug', NULL)::text);
            ELSE
                PERFORM pg_notify('{CHANNEL}', json_build_object('tenant', NEW.id, 'slug', NEW.slug)::text);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER measurement_prefix_tenant AFTER INSERT OR DELETE OR UPDATE OF slug ON tenants
        FOR EACH ROW EXECUTE FUNCTION measurement_prefix_notify_tenant()
        """
    )
    op.execute(
        """
        CREATE TRIGGER measurement_prefix_tenants_truncated AFTER TRUNCATE ON tenants
        FOR EACH STATEMENT EXECUTE FUNCTION measurement_prefix_notify_tenant()
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION measurement_prefix_notify_hosts() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', json_build_object('hosts', NEW.tenant_id)::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER measurement_prefix_episode_added AFTER INSERT ON episodes
        FOR EACH ROW WHEN (NEW.audio_url IS NOT NULL) EXECUTE FUNCTION measurement_prefix_notify_hosts()
        """
    )
    op.execute(
        """
        CREATE TRIGGER measurement_prefix_episode_moved AFTER UPDATE OF audio_url ON episodes
        FOR EACH ROW WHEN (NEW.audio_url IS DISTINCT FROM OLD.audio_url AND NEW.audio_url IS NOT NULL)
        EXECUTE FUNCTION measurement_prefix_notify_hosts()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS measurement_prefix_episode_moved ON episodes")
    op.execute("DROP TRIGGER IF EXISTS measurement_prefix_episode_added ON episodes")
    op.execute("DROP FUNCTION IF EXISTS measurement_prefix_notify_hosts()")
    op.execute("DROP TRIGGER IF EXISTS measurement_prefix_tenants_truncated ON tenants")
    op.execute("DROP TRIGGER IF EXISTS measurement_prefix_tenant ON tenants")
    op.execute("DROP FUNCTION IF EXISTS measurement_prefix_notify_tenant()")
    op.execute("DROP FUNCTION IF EXISTS measurement_enclosure_hosts(uuid[])")
    op.execute("DROP FUNCTION IF EXISTS measurement_prefix_tenants()")
