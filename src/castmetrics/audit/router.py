"""The audit log: who changed what in this tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from castmetrics.audit import service
from castmetrics.auth.dependencies import requires
from castmetrics.auth.principal import Principal
from castmetrics.http.pagination import CursorParam, Limit, Page
from castmetrics.http.timerange import parse_bound

router = APIRouter(prefix="/v1/audit-log", tags=["audit"])

Filter = Annotated[str | None, Query(max_length=200)]


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    entity_type: str
    entity_id: str | None
    changes: dict[str, Any]
    request_id: str | None


@router.get("", response_model=Page[AuditEntryOut], summary="The audit log")
async def list_audit_log(
    principal: Annotated[Principal, requires("audit_log", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
    entity_type: Filter = None,
    entity_id: Filter = None,
    actor_id: Filter = None,
    action: Filter = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[AuditEntryOut]:
    """Every create, update and delete in the tenant, newest first: actor, action, entity, time and a
    summary of changed fields (secrets masked). Filter by entity, actor, action and time."""
    entries, next_cursor = await service.list_page(
        principal.session,
        limit=limit,
        cursor=cursor,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_id=actor_id,
        action=action,
        occurred_from=parse_bound(from_, name="from", end=False),
        occurred_to=parse_bound(to, name="to", end=True),
    )
    items = [AuditEntryOut.model_validate({**e.__dict__, "id": str(e.id)}) for e in entries]
    return Page(items=items, next_cursor=next_cursor)
