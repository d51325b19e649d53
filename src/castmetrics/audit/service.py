"""Recording audit entries: the one function every domain calls when it changes something."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit.models import AuditEntry
from castmetrics.auth.principal import Actor
from castmetrics.db.repository import Repository

# Field names whose values never enter the audit log, whatever the domain passes in.
SECRET_FIELDS = frozenset({"password", "password_hash", "token", "key", "key_hash", "secret", "refresh_token"})

_entries = Repository(AuditEntry, moment=AuditEntry.occurred_at)


def jsonable(value: Any) -> Any:
    """A value as the audit log stores it: dates and times in ISO 8601, UUIDs as strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def snapshot(entity: Any, fields: Sequence[str]) -> dict[str, Any]:
    """The audited fields of an entity, ready for ``record(before=…, after=…)``."""
    return {field: jsonable(getattr(entity, field)) for field in fields}


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


async def list_page(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
) -> tuple[Sequence[AuditEntry], str | None]:
    """The tenant's audit entries, newest first, narrowed by any of the filters."""
    statement = select(AuditEntry)
    for column, value in (
        (AuditEntry.entity_type, entity_type),
        (AuditEntry.entity_id, entity_id),
        (AuditEntry.actor_id, actor_id),
        (AuditEntry.action, action),
    ):
        if value is not None:
            statement = statement.where(column == value)
    if occurred_from is not None:
        statement = statement.where(AuditEntry.occurred_at >= occurred_from)
    if occurred_to is not None:
        statement = statement.where(AuditEntry.occurred_at < occurred_to)
    return await _entries.page(session, statement, limit=limit, cursor=cursor)
