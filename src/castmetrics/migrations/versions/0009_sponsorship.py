"""Sponsorship: sponsors, campaigns with their stage history, and IO bookings (insertion orders).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STAGES = "'draft', 'active', 'paused', 'completed', 'cancelled'"


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(
        """
        CREATE TABLE sponsors (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_sponsors_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            name text NOT NULL CONSTRAINT ck_sponsors_name CHECK (length(name) BETWEEN 1 AND 500),
            website_url text,
            logo_url text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_sponsors PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute("CREATE INDEX ix_sponsors_recent ON sponsors (tenant_id, created_at DESC, id DESC)")
    enable_tenant_rls(bind, "sponsors")

    # A sponsor with campaigns cannot be deleted (NO ACTION): the service answers 409 first.
    op.execute(
        f"""
        CREATE TABLE campaigns (
            tenant_id uuid NOT NULL
                CONSTRAINT fk_campaigns_tenant_id_tenants REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            sponsor_id uuid,
            name text NOT NULL CONSTRAINT ck_campaigns_name CHECK (length(name) BETWEEN 1 AND 500),
            description text,
            start_date date,
            end_date date,
            stage text NOT NULL DEFAULT 'draft' CONSTRAINT ck_campaigns_stage CHECK (stage IN ({STAGES})),
            stage_changed_at timestamptz NOT NULL DEFAULT now(),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_campaigns PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_campaigns_sponsor FOREIGN KEY (tenant_id, sponsor_id) REFERENCES sponsors (tenant_id, id),
            CONSTRAINT ck_campaigns_dates CHECK (end_date >= start_date)
        )
        """
    )
    op.execute("CREATE INDEX ix_campaigns_recent ON campaigns (tenant_id, created_at DESC, id DESC)")
    op.execute("CREATE INDEX ix_campaigns_stage ON campaigns (tenant_id, stage, created_at DESC, id DESC)")
    op.execute(
        "CREATE INDEX ix_campaigns_sponsor ON campaigns (tenant_id, sponsor_id, created_at DESC, id DESC)"
        " WHERE sponsor_id IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_campaigns_dates ON campaigns (tenant_id, start_date, end_date)")
    enable_tenant_rls(bind, "campaigns")

    # Every stage a campaign entered: its creation (from_stage NULL) and each transition.
    op.execute(
        f"""
        CREATE TABLE campaign_stage_changes (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            campaign_id uuid NOT NULL,
            from_stage text CONSTRAINT ck_campaign_stage_changes_from CHECK (from_stage IN ({STAGES})),
            to_stage text NOT NULL CONSTRAINT ck_campaign_stage_changes_to CHECK (to_stage IN ({STAGES})),
            reason text CONSTRAINT ck_campaign_stage_changes_reason CHECK (length(reason) <= 2000),
            actor_type text NOT NULL,
            actor_id text,
            changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CONSTRAINT pk_campaign_stage_changes PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_campaign_stage_changes_campaign FOREIGN KEY (tenant_id, campaign_id)
                REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_campaign_stage_changes_campaign"
        " ON campaign_stage_changes (tenant_id, campaign_id, changed_at DESC, id DESC)"
    )
    enable_tenant_rls(bind, "campaign_stage_changes")

    # IO bookings: the seed's campaign_episodes relation. A deleted podcast takes its bookings with it
    # (as it does its episodes); a deleted episode leaves the booking on its podcast; a deleted
    # original leaves its make-goods standing on their own. A make-good shares its original's campaign
    # (the three-column key makes that a database rule, not only a service check).
    op.execute(
        """
        CREATE TABLE bookings (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            campaign_id uuid NOT NULL,
            podcast_id uuid NOT NULL,
            episode_id uuid,
            placement text NOT NULL
                CONSTRAINT ck_bookings_placement CHECK (placement IN ('pre_roll', 'mid_roll', 'post_roll')),
            ad_format text
                CONSTRAINT ck_bookings_ad_format CHECK (ad_format IN ('host_read', 'pre_recorded', 'programmatic')),
            pricing_model text NOT NULL CONSTRAINT ck_bookings_pricing_model CHECK (pricing_model IN ('cpm', 'flat')),
            rate_minor bigint NOT NULL CONSTRAINT ck_bookings_rate_minor CHECK (rate_minor >= 0),
            currency text NOT NULL CONSTRAINT ck_bookings_currency CHECK (currency ~ '^[A-Z]{3}$'),
            booked_impressions bigint NOT NULL
                CONSTRAINT ck_bookings_booked_impressions CHECK (booked_impressions >= 0),
            flight_start date NOT NULL,
            flight_end date NOT NULL,
            status text NOT NULL DEFAULT 'pending' CONSTRAINT ck_bookings_status
                CHECK (status IN ('pending', 'confirmed', 'delivering', 'delivered', 'cancelled')),
            promo_code text CONSTRAINT ck_bookings_promo_code CHECK (length(promo_code) BETWEEN 1 AND 100),
            vanity_url text,
            make_good_of uuid,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_bookings PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_bookings_campaign_id UNIQUE (tenant_id, campaign_id, id),
            CONSTRAINT fk_bookings_campaign FOREIGN KEY (tenant_id, campaign_id)
                REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_bookings_podcast FOREIGN KEY (tenant_id, podcast_id)
                REFERENCES podcasts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_bookings_episode FOREIGN KEY (tenant_id, episode_id)
                REFERENCES episodes (tenant_id, id) ON DELETE SET NULL (episode_id),
            CONSTRAINT fk_bookings_make_good_of FOREIGN KEY (tenant_id, campaign_id, make_good_of)
                REFERENCES bookings (tenant_id, campaign_id, id) ON DELETE SET NULL (make_good_of),
            CONSTRAINT ck_bookings_flight CHECK (flight_end >= flight_start),
            CONSTRAINT ck_bookings_make_good_of CHECK (make_good_of <> id)
        )
        """
    )
    op.execute("CREATE INDEX ix_bookings_campaign ON bookings (tenant_id, campaign_id, created_at DESC, id DESC)")
    # The inventory check and the podcast filters: one podcast's placement over a span of days.
    op.execute(
        "CREATE INDEX ix_bookings_inventory ON bookings (tenant_id, podcast_id, placement, flight_start, flight_end)"
    )
    op.execute(
        "CREATE INDEX ix_bookings_make_good_of ON bookings (tenant_id, make_good_of) WHERE make_good_of IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_bookings_episode ON bookings (tenant_id, episode_id) WHERE episode_id IS NOT NULL")
    enable_tenant_rls(bind, "bookings")


def downgrade() -> None:
    for table in ("bookings", "campaign_stage_changes", "campaigns", "sponsors"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
