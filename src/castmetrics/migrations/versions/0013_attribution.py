"""Attribution, pacing and sponsor reports.

* ``campaigns.lookback_days``: how far back a conversion of the campaign looks for touchpoints
  (DESIGN.md "Attribution", default 30 days; a request may override it).
* ``bookings.pacing_behind_at``: when ``booking.pacing_behind`` went out for the booking, so it goes
  out once.
* ``attribution_events (tenant_id, campaign_id, occurred_at)``: a campaign's touchpoints and
  conversions over a range without reading the tenant's other campaigns.
* ``report_links``: the signed, expiring links to a campaign's sponsor report; a link can be revoked.
* ``pacing_tenants()``: the tenants with a live booking flying now (the pacing check's cross-tenant
  entry point, like ``catalog_due_podcasts``).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(
        """
        ALTER TABLE campaigns ADD COLUMN lookback_days integer NOT NULL DEFAULT 30
            CONSTRAINT ck_campaigns_lookback_days CHECK (lookback_days BETWEEN 1 AND 365)
        """
    )
    op.execute("ALTER TABLE bookings ADD COLUMN pacing_behind_at timestamptz")
    op.execute(
        "CREATE INDEX ix_attribution_events_campaign ON attribution_events (tenant_id, campaign_id, occurred_at)"
    )
    op.execute(
        """
        CREATE TABLE report_links (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            campaign_id uuid NOT NULL,
            created_by uuid,
            model text NOT NULL,
            lookback_days integer,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz,
            CONSTRAINT pk_report_links PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_report_links_campaign FOREIGN KEY (tenant_id, campaign_id)
                REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX ix_report_links_campaign ON report_links (tenant_id, campaign_id, created_at)")
    enable_tenant_rls(bind, "report_links")
    op.execute(
        """
        CREATE FUNCTION pacing_tenants()
        RETURNS SETOF uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT DISTINCT b.tenant_id FROM public.bookings b JOIN public.tenants t ON t.id = b.tenant_id
              WHERE t.status = 'active' AND b.status <> 'cancelled' AND b.pacing_behind_at IS NULL
                AND b.flight_start <= (now() AT TIME ZONE 'UTC')::date
                AND b.flight_end >= (now() AT TIME ZONE 'UTC')::date - 1 $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION pacing_tenants() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS pacing_tenants()")
    op.execute("DROP TABLE IF EXISTS report_links")
    op.execute("DROP INDEX IF EXISTS ix_attribution_events_campaign")
    op.execute("ALTER TABLE bookings DROP COLUMN IF EXISTS pacing_behind_at")
    op.execute("ALTER TABLE campaigns DROP COLUMN IF EXISTS lookback_days")
