"""Monthly download sketches (issue 19 item 5): ``download_sketches_monthly`` holds, per tenant, scope and
month, the union of the month's daily HyperLogLog sketches of IAB listeners, so a long range reads its
whole months as one sketch each (a 365-day summary: about 12 months and the days of two partial months,
instead of 365 daily sketches). The recorder merges new clients into the month in the transaction that
merges them into the day (``measurement.sketches.add``). Filled here from the daily sketches already
stored; an HLL union is the maximum of each register, so a month's sketch equals the union of its days.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08
"""

from __future__ import annotations

import datasketches
from alembic import op
from sqlalchemy import text

from castmetrics.db.rls import enable_tenant_rls

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

LG_K = 16  # as measurement/sketches.py (a union keeps the precision of its coarsest sketch)


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(
        """
        CREATE TABLE download_sketches_monthly (
            tenant_id uuid NOT NULL,
            month date NOT NULL,
            scope_id uuid NOT NULL,
            sketch bytea NOT NULL,
            CONSTRAINT pk_download_sketches_monthly PRIMARY KEY (tenant_id, scope_id, month),
            CONSTRAINT ck_download_sketches_monthly_first_day CHECK (extract(day FROM month) = 1)
        )
        """
    )
    enable_tenant_rls(bind, "download_sketches_monthly")
    # The months of the daily sketches already stored, one (tenant, scope, month) at a time.
    rows = bind.execute(
        text(
            "SELECT tenant_id, scope_id, date_trunc('month', day)::date AS month, sketch FROM download_sketches "
            "ORDER BY tenant_id, scope_id, month, day"
        )
    )
    key: tuple[object, object, object] | None = None
    union = datasketches.hll_union(LG_K)
    insert = text(
        "INSERT INTO download_sketches_monthly (tenant_id, scope_id, month, sketch) VALUES (:t, :s, :m, :sketch)"
    )
    done: list[dict[str, object]] = []
    for tenant_id, scope_id, month, sketch in rows:
        if key is not None and key != (tenant_id, scope_id, month):
            done.append(_row(key, union))
            union = datasketches.hll_union(LG_K)
        key = (tenant_id, scope_id, month)
        union.update(datasketches.hll_sketch.deserialize(bytes(sketch)))
        if len(done) >= 500:
            bind.execute(insert, done)
            done = []
    if key is not None:
        done.append(_row(key, union))
    if done:
        bind.execute(insert, done)


def _row(key: tuple[object, object, object], union: datasketches.hll_union) -> dict[str, object]:
    tenant_id, scope_id, month = key
    sketch = bytes(union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact())
    return {"t": tenant_id, "s": scope_id, "m": month, "sketch": sketch}


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS download_sketches_monthly")
