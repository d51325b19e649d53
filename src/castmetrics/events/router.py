"""Event ingestion routes: a JSON array or NDJSON of up to 10,000 events a request."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request

from castmetrics.auth.dependencies import requires, settings_of
from castmetrics.auth.principal import Principal
from castmetrics.errors import ContentTooLarge, Invalid, UnsupportedMediaType
from castmetrics.events import service, validation
from castmetrics.events.schemas import AttributionEventIn, IngestOut, ListenerEventIn, request_body
from castmetrics.http.deps import get_database

router = APIRouter(prefix="/v1/events", tags=["events"])
NDJSON = frozenset({"application/x-ndjson", "application/ndjson"})


def parse_batch(content_type: str, body: bytes) -> tuple[list[tuple[int, Any]], list[dict[str, Any]]]:
    """The items of a JSON array or NDJSON body by index, and the NDJSON lines that are not JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    items: list[tuple[int, Any]] = []
    broken: list[dict[str, Any]] = []
    if media in NDJSON:
        lines = [line for line in body.split(b"\n") if line.strip()]
        if len(lines) > service.MAX_BATCH:
            raise ContentTooLarge(f"a request carries at most {service.MAX_BATCH:,} events (got {len(lines):,})")
        for index, line in enumerate(lines):
            try:
                items.append((index, orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                broken.append({"index": index, "error": f"not valid JSON: {exc.msg}"})
        return items, broken
    if media not in ("application/json", ""):
        raise UnsupportedMediaType("send application/json (an array of events) or application/x-ndjson")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc.msg}") from None
    if not isinstance(parsed, list):
        raise Invalid("the body must be a JSON array of events (or NDJSON, one event per line)")
    if len(parsed) > service.MAX_BATCH:
        raise ContentTooLarge(f"a request carries at most {service.MAX_BATCH:,} events (got {len(parsed):,})")
    return list(enumerate(parsed)), broken


async def _ingest(request: Request, principal: Principal, kind: str) -> dict[str, Any]:
    body = await request.body()  # already read by ``_body``, before the transaction opened
    retention_days = settings_of(request).event_retention_days
    # Parsing and validation in one synchronous stretch: the parsed items are dropped before the
    # collector resumes, so it never scans them (see ``collector_paused``).
    with validation.collector_paused():
        items, broken = parse_batch(request.headers.get("content-type", ""), body)
        checked = service.check(kind, principal.tenant.id, items, retention_days=retention_days)
        del items
    result = await service.store(
        principal.session, principal.tenant, kind, checked, db=get_database(request), pre_rejected=broken
    )
    return result.as_dict()


async def _read_body(request: Request) -> bytes:
    """Reads the whole body before authentication opens the request's transaction, so a slow upload
    never holds a database connection (FastAPI solves dependencies in parameter order)."""
    return await request.body()


BodyFirst = Annotated[bytes, Depends(_read_body)]


@router.post(
    "/listener",
    response_model=IngestOut,
    summary="Ingest listener events (play, pause, complete, …)",
    openapi_extra=request_body(ListenerEventIn),
)
async def ingest_listener(
    request: Request, _body: BodyFirst, principal: Annotated[Principal, requires("events", "create")]
) -> dict[str, Any]:
    """Up to 10,000 events or 10 MB. Valid events are stored all together or not at all; each refused
    item is listed by index with its reason. A retried batch counts as duplicates."""
    return await _ingest(request, principal, "listener")


@router.post(
    "/attribution",
    response_model=IngestOut,
    summary="Ingest attribution events (impression, click, conversion, …)",
    openapi_extra=request_body(AttributionEventIn),
)
async def ingest_attribution(
    request: Request, _body: BodyFirst, principal: Annotated[Principal, requires("events", "create")]
) -> dict[str, Any]:
    """Like listener events; a stored `conversion` emits `conversion.recorded`."""
    return await _ingest(request, principal, "attribution")
