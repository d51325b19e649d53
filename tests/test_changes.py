"""Recording a change (``castmetrics.changes``): its audit entry and outbox event commit or roll back together."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from castmetrics.audit.models import AuditEntry
from castmetrics.auth.principal import Actor
from castmetrics.changes import record_change
from castmetrics.db.session import Database
from castmetrics.outbox.models import OutboxEvent

ACTOR = Actor("user", "u-1")


class Abandoned(Exception):
    """Raised to roll the change's transaction back."""


async def _rename(db: Database, tenant_id: uuid.UUID, entity_id: uuid.UUID, *, then_fail: bool = False) -> None:
    async with db.tenant_transaction(tenant_id) as session:
        await record_change(
            session, tenant_id=tenant_id, actor=ACTOR, action="update", entity_type="sponsor", entity_id=entity_id,
            before={"name": "Old"}, after={"name": "New"},
            event_type="sponsor.renamed", payload={"sponsor_id": str(entity_id)},
        )  # fmt: skip
        if then_fail:
            raise Abandoned


async def test_the_entry_and_the_event_are_written_together(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    entity_id = uuid.uuid4()

    await _rename(db, tenant.id, entity_id)

    async with db.tenant_transaction(tenant.id) as session:
        entry = (await session.scalars(select(AuditEntry).where(AuditEntry.entity_type == "sponsor"))).one()
        event = (await session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "sponsor.renamed"))).one()
    assert (entry.actor_id, entry.action, entry.entity_id) == ("u-1", "update", str(entity_id))
    assert entry.changes == {"name": {"before": "Old", "after": "New"}}
    assert event.payload == {"sponsor_id": str(entity_id)}


async def test_a_rolled_back_change_leaves_neither(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()

    with pytest.raises(Abandoned):
        await _rename(db, tenant.id, uuid.uuid4(), then_fail=True)

    async with db.tenant_transaction(tenant.id) as session:
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.entity_type == "sponsor"))).all()
        events = (await session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "sponsor.renamed"))).all()
    assert (entries, events) == ([], [])
