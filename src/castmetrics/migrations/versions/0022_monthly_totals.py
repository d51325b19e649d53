"""Monthly totals (issue 19 item 5): ``listener_totals_monthly`` and ``download_totals_monthly`` hold, per
tenant, scope (episode, podcast, the whole tenant) and month, the sums of the month's daily rollup rows
(``listener_daily``'s counts and listening time, ``download_listeners_daily``'s downloads). A long range
reads its whole settled months as one row per scope each: the tenant's top episodes over 90 days read two
or three months of episode totals and the days of the partial months, not every episode's every day.
The refresh sums a month again for the scopes a batch touched, in the transaction that changes their days.
Filled here from the daily rows already stored.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from castmetrics.db.rls import enable_tenant_rls

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

LISTENER_COLUMNS = (
    "events", "downloads", "plays", "pauses", "resumes", "seeks", "skips", "progresses", "completes",
)  # fmt: skip


def upgrade() -> None:
    bind = op.get_bind()
    counts = "".join(f"\n            {c} bigint NOT NULL," for c in LISTENER_COLUMNS)
    op.execute(
        f"""
        CREATE TABLE listener_totals_monthly (
            tenant_id uuid NOT NULL,
            scope_id uuid NOT NULL,
            month date NOT NULL,{counts}
            listen_seconds numeric NOT NULL,
            CONSTRAINT pk_listener_totals_monthly PRIMARY KEY (tenant_id, scope_id, month),
            CONSTRAINT ck_listener_totals_monthly_first_day CHECK (extract(day FROM month) = 1)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE download_totals_monthly (
            tenant_id uuid NOT NULL,
            scope_id uuid NOT NULL,
            month date NOT NULL,
            downloads bigint NOT NULL,
            CONSTRAINT pk_download_totals_monthly PRIMARY KEY (tenant_id, scope_id, month),
            CONSTRAINT ck_download_totals_monthly_first_day CHECK (extract(day FROM month) = 1)
        )
        """
    )
    for table in ("listener_totals_monthly", "download_totals_monthly"):
        op.execute(f"CREATE INDEX ix_{table}_month ON {table} (tenant_id, month)")
        enable_tenant_rls(bind, table)
    columns = ", ".join((*LISTENER_COLUMNS, "listen_seconds"))
    sums = ", ".join(f"sum({c})" for c in (*LISTENER_COLUMNS, "listen_seconds"))
    op.execute(
        f"INSERT INTO listener_totals_monthly (tenant_id, scope_id, month, {columns}) "
        f"SELECT tenant_id, scope_id, date_trunc('month', day)::date, {sums} FROM listener_daily GROUP BY 1, 2, 3"
    )
    op.execute(
        "INSERT INTO download_totals_monthly (tenant_id, scope_id, month, downloads) "
        "SELECT tenant_id, scope_id, date_trunc('month', day)::date, sum(downloads) FROM download_listeners_daily "
        "GROUP BY 1, 2, 3"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS download_totals_monthly")
    op.execute("DROP TABLE IF EXISTS listener_totals_monthly")
