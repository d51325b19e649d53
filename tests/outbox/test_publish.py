"""The outbox: events commit with their change, and the periodic job publishes each exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json

import psycopg
import pytest
from sqlalchemy import select, text

from castmetrics.db import urls
from castmetrics.db.session import Database
from castmetrics.jobs import worker
from castmetrics.outbox import service as outbox
from castmetrics.outbox.models import OutboxEvent
from castmetrics.workflows import publishing as tasks


async def test_event_rolls_back_with_its_change(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    with pytest.raises(RuntimeError):
        async with db.tenant_transaction(tenant.id) as session:
            await outbox.add_event(session, tenant_id=tenant.id, event_type="podcast.created", payload={})
            raise RuntimeError("the change failed")
    async with db.tenant_transaction(tenant.id) as session:
        types = (await session.scalars(select(OutboxEvent.event_type))).all()
    assert types == ["tenant.created"]


async def test_publish_notifies_each_event_once_per_tenant(make_tenant, db: Database, runtime_url: str) -> None:  # type: ignore[no-untyped-def]
    a = await make_tenant()
    b = await make_tenant()
    async with db.tenant_transaction(a.id) as session:
        await outbox.add_event(session, tenant_id=a.id, event_type="podcast.created", payload={"n": 1})
    listener = await psycopg.AsyncConnection.connect(urls.libpq_url(runtime_url), autocommit=True)
    await listener.execute(f"LISTEN {outbox.CHANNEL}")

    published = await tasks.publish_all(db)
    again = await tasks.publish_all(db)

    messages = []

    async def collect() -> None:
        async for note in listener.notifies():
            messages.append(json.loads(note.payload))
            if len(messages) == 3:
                return

    await asyncio.wait_for(collect(), timeout=5)
    await listener.close()
    assert (published, again) == (3, 0)
    assert sorted((m["tenant_id"], m["type"]) for m in messages) == sorted(
        [(str(a.id), "tenant.created"), (str(a.id), "podcast.created"), (str(b.id), "tenant.created")]
    )
    async with db.tenant_transaction(a.id) as session:
        pending = (
            await session.execute(text("SELECT count(*) FROM outbox_events WHERE published_at IS NULL"))
        ).scalar_one()
    assert pending == 0


async def test_pending_tenants_reveals_ids_only(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    a = await make_tenant()
    async with db.transaction() as session:
        assert await outbox.pending_tenants(session) == [a.id]
        # the definer function does not open the table itself to a context-less caller
        assert (await session.execute(text("SELECT count(*) FROM outbox_events"))).scalar_one() == 0


async def test_worker_runs_the_periodic_publish(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    running = asyncio.create_task(worker.run(db, in_process=True, concurrency=1))
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            async with db.tenant_transaction(tenant.id) as session:
                pending = (
                    await session.execute(text("SELECT count(*) FROM outbox_events WHERE published_at IS NULL"))
                ).scalar_one()
            if pending == 0:
                break
    finally:
        running.cancel()
        # procrastinate treats cancellation as a graceful stop: the worker returns normally
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert pending == 0
    assert running.done()
