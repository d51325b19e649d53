"""Writing domain events to the outbox and publishing them (NOTIFY) once committed."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.outbox.models import OutboxEvent

CHANNEL = "castmetrics_outbox"


async def add_event(
    session: AsyncSession, *, tenant_id: uuid.UUID, event_type: str, payload: dict[str, Any]
) -> OutboxEvent:
    """Queue ``event_type`` in the caller's transaction: it exists only if the change commits."""
    event = OutboxEvent(tenant_id=tenant_id, event_type=event_type, payload=payload)
    session.add(event)
    await session.flush()
    return event


async def pending_tenants(session: AsyncSession) -> list[uuid.UUID]:
    """Tenants with unpublished events, through the narrow definer function (no rows exposed)."""
    result = await session.execute(text("SELECT outbox_pending_tenants()"))
    return [row[0] for row in result]


# Oldest first; SKIP LOCKED lets several workers publish side by side without sending twice.
_CLAIM_PENDING = text(
    """
    UPDATE outbox_events AS o SET published_at = clock_timestamp()
    FROM (
        SELECT tenant_id, id FROM outbox_events
        WHERE published_at IS NULL
        ORDER BY created_at, id
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ) AS pending
    WHERE o.tenant_id = pending.tenant_id AND o.id = pending.id
    RETURNING o.id, o.tenant_id, o.event_type, o.payload, o.created_at
    """
)


async def publish_pending(session: AsyncSession, batch: int = 500) -> int:
    """Mark up to ``batch`` of the current tenant's events published and NOTIFY each on ``CHANNEL``."""
    return len(await publish_pending_events(session, batch))


async def publish_pending_events(session: AsyncSession, batch: int = 500) -> list[Any]:
    """``publish_pending``, answering the published rows (id, tenant_id, event_type, payload, created_at).

    Runs in a tenant transaction: RLS limits it to that tenant. NOTIFY is delivered on commit, so
    listeners never hear of an event whose publication rolled back; consumers called with the rows in
    the same transaction (workflows) see each event exactly when it is published.
    """
    rows = (await session.execute(_CLAIM_PENDING, {"batch": batch})).all()
    for row in rows:
        message = json.dumps(
            {
                "id": str(row.id),
                "tenant_id": str(row.tenant_id),
                "type": row.event_type,
                "created_at": row.created_at.isoformat(),
            }
        )
        await session.execute(text("SELECT pg_notify(:channel, :message)"), {"channel": CHANNEL, "message": message})
    return list(rows)
