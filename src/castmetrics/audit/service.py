"""Recording audit entries: the one function every domain calls when it changes something."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit.models import AuditEntry

# Field names whose values never enter the audit log, whatever the domain passes in.
SECRET_FIELDS = frozenset(
    {"password", "password_hash", "token", "key", "key_hash", "secret", "refresh_token"}
)


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, an API key, a platform admin, or the system itself (CLI, jobs)."""

    type: str
    id: str | None = None

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls("system", name)


def summarize_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """``{field: {"before": …, "after": …}}`` for fields that differ; secrets are masked."""
    before = before or {}
    after = after or {}
    summary: dict[str, Any] = {}
    for field in sorted(set(before) | set(after)):
        old, new = before.get(field), after.get(field)
        if old == new:
            continue
        if field in SECRET_FIELDS:
            summary[field] = {"changed": True}
        else:
            summary[field] = {"before": old, "after": new}
    return summary


async def record(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: str | uuid.UUID | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry in the caller's transaction (so it commits or rolls back with the change)."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    entry = AuditEntry(
        tenant_id=tenant_id,
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id) if entity_id is not None else None,
        changes=summarize_changes(before, after),
        request_id=request_id,
    )
    session.add(entry)
    await session.flush()
    return entry
