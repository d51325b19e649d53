"""Analytics: listener rollups per scope (episode, podcast, tenant) by day and by hour, exact unique
listeners as compressed bitmaps, and download counts by scope and hour.

* ``listener_daily`` replaces ``listener_daily_rollups`` (episode rows only) and
  ``listener_daily_uniques``: one row per scope and UTC day with the counts per event type, the
  listening time, the exact unique listeners and their set as a Roaring bitmap of per-tenant listener
  numbers (``listener_keys``), so distinct listeners over any range are an exact union of days.
* ``listener_hourly`` and ``download_hourly`` hold the additive counts by scope and UTC hour: buckets
  in any time zone whose offsets are whole hours, and hourly series, are sums of them.
* ``download_listeners_daily`` gains the scope's downloads of the day.

The new tables are filled by the rollup refresh: ``castmetrics rollups rebuild`` fills past days.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_COUNTS = """
            events bigint NOT NULL,
            downloads bigint NOT NULL,
            plays bigint NOT NULL,
            pauses bigint NOT NULL,
            resumes bigint NOT NULL,
            seeks bigint NOT NULL,
            skips bigint NOT NULL,
            progresses bigint NOT NULL,
            completes bigint NOT NULL,
            listen_seconds numeric NOT NULL,
"""


def upgrade() -> None:
    bind = op.get_bind()
    # Days rolled up before this revision have none of the new rows: have the refresh redo them.
    op.execute(
        """
        INSERT INTO rollup_invalidations (tenant_id, day, kind)
        SELECT DISTINCT tenant_id, day, 'listener' FROM listener_daily_rollups
        UNION SELECT DISTINCT tenant_id, day, 'download' FROM download_listeners_daily
        """
    )
    op.execute("DROP TABLE listener_daily_rollups")
    op.execute("DROP TABLE listener_daily_uniques")
    # Dense per-tenant numbers for listener ids, given out in order by the rollup refresh (which holds
    # the tenant's rollup lock), so that a tenant's bitmaps stay small.
    op.execute(
        """
        CREATE TABLE listener_keys (
            tenant_id uuid NOT NULL,
            listener_id text NOT NULL,
            key integer NOT NULL,
            CONSTRAINT pk_listener_keys PRIMARY KEY (tenant_id, listener_id)
        )
        """
    )
    enable_tenant_rls(bind, "listener_keys")
    # The last number given out per tenant. (No index on (tenant_id, key): with a second index the planner
    # may pick it for lookups by listener id when statistics lag behind a growing tenant.)
    op.execute(
        """
        CREATE TABLE listener_key_counters (
            tenant_id uuid NOT NULL CONSTRAINT pk_listener_key_counters PRIMARY KEY,
            last_key integer NOT NULL
        )
        """
    )
    enable_tenant_rls(bind, "listener_key_counters")
    op.execute(
        f"""
        CREATE TABLE listener_daily (
            tenant_id uuid NOT NULL,
            scope_id uuid NOT NULL,
            day date NOT NULL,{_COUNTS}
            unique_listeners bigint NOT NULL,
            listeners bytea NOT NULL,
            CONSTRAINT pk_listener_daily PRIMARY KEY (tenant_id, scope_id, day)
        )
        """
    )
    op.execute("CREATE INDEX ix_listener_daily_day ON listener_daily (tenant_id, day)")
    enable_tenant_rls(bind, "listener_daily")
    # The union of a month's daily bitmaps for each podcast and the whole tenant, so that a year is a
    # dozen months and a few days, not 365 days.
    op.execute(
        """
        CREATE TABLE listener_monthly (
            tenant_id uuid NOT NULL,
            scope_id uuid NOT NULL,
            month date NOT NULL,
            unique_listeners bigint NOT NULL,
            listeners bytea NOT NULL,
            CONSTRAINT pk_listener_monthly PRIMARY KEY (tenant_id, scope_id, month)
        )
        """
    )
    enable_tenant_rls(bind, "listener_monthly")
    op.execute(
        f"""
        CREATE TABLE listener_hourly (
            tenant_id uuid NOT NULL,
            scope_id uuid NOT NULL,
            hour timestamptz NOT NULL,{_COUNTS}
            CONSTRAINT pk_listener_hourly PRIMARY KEY (tenant_id, scope_id, hour)
        )
        """
    )
    op.execute("CREATE INDEX ix_listener_hourly_hour ON listener_hourly (tenant_id, hour)")
    enable_tenant_rls(bind, "listener_hourly")
    op.execute(
        """
        CREATE TABLE download_hourly (
            tenant_id uuid NOT NULL,
            scope_id uuid NOT NULL,
            hour timestamptz NOT NULL,
            downloads bigint NOT NULL,
            CONSTRAINT pk_download_hourly PRIMARY KEY (tenant_id, scope_id, hour)
        )
        """
    )
    op.execute("CREATE INDEX ix_download_hourly_hour ON download_hourly (tenant_id, hour)")
    enable_tenant_rls(bind, "download_hourly")
    op.execute("ALTER TABLE download_listeners_daily ADD COLUMN downloads bigint NOT NULL DEFAULT 0")
    op.execute("CREATE INDEX ix_download_listeners_daily_day ON download_listeners_daily (tenant_id, day)")
    # The recompute of a day deletes the day's breakdown rows: without this it scanned the tenant's rows.
    op.execute("CREATE INDEX ix_download_breakdown_daily_day ON download_breakdown_daily (tenant_id, day)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_download_breakdown_daily_day")
    op.execute("DROP INDEX IF EXISTS ix_download_listeners_daily_day")
    op.execute("ALTER TABLE download_listeners_daily DROP COLUMN IF EXISTS downloads")
    bind = op.get_bind()
    op.execute(
        """
        INSERT INTO rollup_invalidations (tenant_id, day, kind)
        SELECT DISTINCT tenant_id, day, 'listener' FROM listener_daily
        """
    )
    for table in (
        "download_hourly", "listener_hourly", "listener_monthly", "listener_daily", "listener_key_counters",
        "listener_keys",
    ):  # fmt: skip
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    # The tables of revision 0010, empty: the refresh fills them again from the log rows above.
    op.execute(
        f"""
        CREATE TABLE listener_daily_rollups (
            tenant_id uuid NOT NULL,
            day date NOT NULL,
            episode_id uuid NOT NULL,{_COUNTS}
            unique_listeners bigint NOT NULL DEFAULT 0,
            refreshed_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_listener_daily_rollups PRIMARY KEY (tenant_id, day, episode_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_listener_daily_rollups_episode ON listener_daily_rollups (tenant_id, episode_id, day)")
    enable_tenant_rls(bind, "listener_daily_rollups")
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
