"""Recording a change that others hear of: its audit entry and its outbox event, in one call."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit import service as audit
from castmetrics.audit.models import AuditEntry
from castmetrics.auth.principal import Actor
from castmetrics.outbox import service as outbox
from castmetrics.outbox.models import OutboxEvent


async def record_change(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: str | uuid.UUID | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    event_type: str,
    payload: dict[str, Any],
) -> tuple[AuditEntry, OutboxEvent]:
    """``audit.record`` then ``outbox.add_event`` in the caller's transaction: the entry and the event
    commit, or roll back, with the change itself. What is audited and announced is the domain's call."""
    entry = await audit.record(
        session, tenant_id=tenant_id, actor=actor, action=action, entity_type=entity_type, entity_id=entity_id,
        before=before, after=after,
    )  # fmt: skip
    event = await outbox.add_event(session, tenant_id=tenant_id, event_type=event_type, payload=payload)
    return entry, event
