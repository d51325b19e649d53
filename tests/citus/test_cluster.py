"""On a Citus cluster (``CASTMETRICS_TEST_CITUS=1``: a coordinator and two workers): ``migrate`` distributes
every table with a ``tenant_id`` by it, in one colocation group with shards on both workers, the global
tables that tenant tables reference become reference tables, RLS holds on every shard, and one tenant sees
nothing of another's through the runtime role."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from sqlalchemy import create_engine, pool, text

from castmetrics.db import citus, urls
from castmetrics.db.session import Database
from tests.support.citus import CitusCluster


def test_every_tenant_table_is_distributed_by_tenant_in_one_colocation_group(
    runtime_url: str, owner_url: str, citus_cluster: CitusCluster
) -> None:
    engine = create_engine(urls.sqlalchemy_url(owner_url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            tables = citus.tenant_tables(connection)
            assert {"podcasts", "episodes", "listener_events", "download_requests", "users"} <= set(tables)
            rows = connection.execute(
                text(
                    "SELECT c.relname, p.partmethod, p.colocationid, "
                    "column_to_column_name(p.logicalrelid, p.partkey) AS column, "
                    "(SELECT count(DISTINCT s.nodeport) FROM citus_shards s WHERE s.table_name = p.logicalrelid) "
                    "AS nodes FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid "
                    "WHERE c.relnamespace = 'public'::regnamespace"
                )
            ).all()
            found = {row.relname: row for row in rows}
            assert {found[t].partmethod for t in tables} == {"h"}
            assert {found[t].column for t in tables} == {"tenant_id"}
            assert len({found[t].colocationid for t in tables}) == 1
            workers = len(citus_cluster.ports) - 1
            assert {found[t].nodes for t in tables} == {workers}
            assert {found[t].partmethod for t in citus.REFERENCE_TABLES} == {"n"}
            assert citus.shard_isolation_violations(connection) == []
    finally:
        engine.dispose()


async def test_a_tenant_sees_and_changes_nothing_of_another_on_the_shards(
    db: Database, make_tenant: Any, owner_url: str
) -> None:
    a, b = await make_tenant(), await make_tenant()
    async with db.tenant_transaction(a.id) as session:
        await session.execute(
            text("INSERT INTO podcasts (tenant_id, id, name) VALUES (:t, :id, 'Of A')"), {"t": a.id, "id": uuid.uuid4()}
        )
    async with db.tenant_transaction(b.id) as session:
        assert (await session.execute(text("SELECT count(*) FROM podcasts"))).scalar_one() == 0
        changed = await session.execute(text("UPDATE podcasts SET name = 'taken' WHERE tenant_id = :a"), {"a": a.id})
        assert changed.rowcount == 0
    async with db.transaction() as session:  # no tenant: RLS fails closed on the shards too
        assert (await session.execute(text("SELECT count(*) FROM podcasts"))).scalar_one() == 0
    with psycopg.connect(urls.libpq_url(owner_url)) as conn:
        assert conn.execute("SELECT name FROM podcasts WHERE tenant_id = %s", (a.id,)).fetchall() == [("Of A",)]
