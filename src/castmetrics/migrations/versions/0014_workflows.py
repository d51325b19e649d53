"""Workflows: event-triggered steps, and their executions (a durable, leased work queue).

* ``workflows``: the seed's Workflow (name, description, trigger_event, steps, enabled) with the
  trigger's ``conditions`` and the secret that signs its webhook requests.
* ``workflow_executions``: one run of a workflow for one event (or a manual run): its status, the
  step to run next, each step's results, when it may run next (delays, retry backoff) and the claim
  and lease of the worker running it (a dead worker's lease runs out and another picks it up).
* ``workflow_due_executions(per_tenant, batch)``: the cross-tenant dispatcher's view of what is due,
  interleaved across tenants so one tenant's flood cannot starve another's workflows.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(
        """
        CREATE TABLE workflows (
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            id uuid NOT NULL,
            name text NOT NULL,
            description text,
            trigger_event text NOT NULL,
            conditions jsonb NOT NULL DEFAULT '[]'::jsonb,
            steps jsonb NOT NULL,
            enabled boolean NOT NULL DEFAULT true,
            secret text NOT NULL,
            created_by uuid,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_workflows PRIMARY KEY (tenant_id, id)
        )
        """
    )
    op.execute("CREATE INDEX ix_workflows_trigger ON workflows (tenant_id, trigger_event) WHERE enabled")
    op.execute("CREATE INDEX ix_workflows_created ON workflows (tenant_id, created_at, id)")
    enable_tenant_rls(bind, "workflows")
    op.execute(
        """
        CREATE TABLE workflow_executions (
            tenant_id uuid NOT NULL,
            id uuid NOT NULL,
            workflow_id uuid NOT NULL,
            status text NOT NULL DEFAULT 'pending'
                CONSTRAINT ck_workflow_executions_status
                CHECK (status IN ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
            trigger_event text NOT NULL,
            event_id uuid,
            payload jsonb NOT NULL DEFAULT '{}'::jsonb,
            steps jsonb NOT NULL,
            step_index integer NOT NULL DEFAULT 0,
            attempts integer NOT NULL DEFAULT 0,
            results jsonb NOT NULL DEFAULT '[]'::jsonb,
            error text,
            next_run_at timestamptz NOT NULL DEFAULT now(),
            claim uuid,
            lease_until timestamptz,
            rerun_of uuid,
            created_by uuid,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            started_at timestamptz,
            finished_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_workflow_executions PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_workflow_executions_workflow FOREIGN KEY (tenant_id, workflow_id)
                REFERENCES workflows (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    # One execution per workflow and triggering event: dispatching an event twice starts nothing new.
    op.execute(
        "CREATE UNIQUE INDEX ux_workflow_executions_event ON workflow_executions (tenant_id, workflow_id, event_id)"
        " WHERE event_id IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_workflow_executions_list ON workflow_executions (tenant_id, workflow_id, created_at, id)"
    )
    op.execute(
        "CREATE INDEX ix_workflow_executions_due ON workflow_executions (next_run_at)"
        " WHERE status IN ('pending', 'waiting')"
    )
    op.execute(
        "CREATE INDEX ix_workflow_executions_leased ON workflow_executions (lease_until) WHERE status = 'running'"
    )
    enable_tenant_rls(bind, "workflow_executions")
    op.execute(
        """
        CREATE FUNCTION workflow_due_executions(p_per_tenant integer, p_batch integer)
        RETURNS TABLE (tenant_id uuid, execution_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
        AS $$
            -- Executions claimed and still leased count against both limits: the queue never holds more
            -- than p_batch of them, nor a tenant more than p_per_tenant.
            WITH inflight AS (
                SELECT x.tenant_id, count(*) AS n FROM public.workflow_executions x
                WHERE x.status = 'running' AND x.lease_until >= now()
                GROUP BY x.tenant_id
            ),
            due AS (
                SELECT x.tenant_id, x.id, x.next_run_at FROM public.workflow_executions x
                WHERE x.status IN ('pending', 'waiting') AND x.next_run_at <= now()
                UNION ALL
                SELECT x.tenant_id, x.id, x.lease_until FROM public.workflow_executions x
                WHERE x.status = 'running' AND x.lease_until < now()
            ),
            ranked AS (
                SELECT d.tenant_id, d.id, d.next_run_at,
                       row_number() OVER (PARTITION BY d.tenant_id ORDER BY d.next_run_at, d.id)
                           + coalesce(i.n, 0) AS rank
                FROM due d
                JOIN public.tenants t ON t.id = d.tenant_id AND t.status = 'active'
                LEFT JOIN inflight i ON i.tenant_id = d.tenant_id
            )
            SELECT r.tenant_id, r.id FROM ranked r
            WHERE r.rank <= p_per_tenant
            ORDER BY r.rank, r.next_run_at, r.id
            LIMIT greatest(0, p_batch - (SELECT coalesce(sum(n), 0) FROM inflight))
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION workflow_due_executions(integer, integer) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS workflow_due_executions(integer, integer)")
    op.execute("DROP TABLE IF EXISTS workflow_executions")
    op.execute("DROP TABLE IF EXISTS workflows")
