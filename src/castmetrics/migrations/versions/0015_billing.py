"""Billing with Stripe.

* ``tenants.billing_state_at``: the Stripe ``created`` time of the last subscription event applied to the
  tenant, so an older event delivered later changes nothing (webhooks arrive in any order).
* ``stripe_events``: each Stripe event id received for a tenant, with what was done with it: an id already
  recorded is a duplicate delivery and is applied once.
* ``users (stripe_customer_id)``: the webhook finds the tenant of a Stripe customer.
* ``billing_tenant_of_customer(text)``: that lookup across tenants, answering a tenant id and nothing else
  (the webhook has no tenant context until it knows whose event it holds).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE tenants ADD COLUMN billing_state_at timestamptz")
    op.execute(
        """
        CREATE TABLE stripe_events (
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            id text NOT NULL,
            type text NOT NULL,
            created timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            outcome text NOT NULL,
            CONSTRAINT pk_stripe_events PRIMARY KEY (tenant_id, id),
            CONSTRAINT ck_stripe_events_outcome
                CHECK (outcome IN ('pending', 'applied', 'stale', 'ignored'))
        )
        """
    )
    enable_tenant_rls(bind, "stripe_events")
    op.execute(
        "CREATE INDEX ix_users_stripe_customer ON users (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL"
    )
    # The oldest user carrying the customer decides, should two ever carry it.
    op.execute(
        """
        CREATE FUNCTION billing_tenant_of_customer(p_customer text)
        RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$ SELECT u.tenant_id FROM public.users u
              WHERE u.stripe_customer_id = p_customer
              ORDER BY u.created_at LIMIT 1 $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION billing_tenant_of_customer(text) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS billing_tenant_of_customer(text)")
    op.execute("DROP INDEX IF EXISTS ix_users_stripe_customer")
    op.execute("DROP TABLE IF EXISTS stripe_events")
    op.execute("ALTER TABLE tenants DROP COLUMN IF EXISTS billing_state_at")
