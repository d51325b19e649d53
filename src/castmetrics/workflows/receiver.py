"""The demo's webhook receiver: ``POST /v1/demo/webhook/{tenant_slug}`` verifies a workflow delivery's
signature and logs it, so the demo's webhook workflow has somewhere to post with nothing else running.

Mounted only when ``settings.demo_webhook_receiver`` is on (``serve --demo`` on the embedded database).
The request carries no credentials: the tenant comes from the slug in the path (resolved by the narrow
cross-tenant ``measurement_tenants()`` function, as the measurement prefix does), the workflow from the
body, and the delivery is accepted only if it is signed with that workflow's secret within
``TOLERANCE_SECONDS``. Every refusal is the same 401, so the answer does not say which part was wrong.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Header, Path, Request, Response, status
from sqlalchemy import select, text

from castmetrics.db.session import Database
from castmetrics.errors import ContentTooLarge, Unauthorized
from castmetrics.http.deps import get_database
from castmetrics.workflows.models import Workflow
from castmetrics.workflows.steps import sign

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
TOLERANCE_SECONDS = 300
REFUSED = "the delivery's signature does not verify"

router = APIRouter(prefix="/v1/demo", tags=["demo"])


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: what the log line names."""

    tenant_id: uuid.UUID
    workflow_id: uuid.UUID
    execution_id: str | None
    event: str | None


def _timestamp_of(signature: str) -> int | None:
    """The ``t`` of ``t=<unix>,v1=<hex>``, or ``None`` when the header is not of that shape."""
    parts = dict(item.split("=", 1) for item in signature.split(",") if "=" in item)
    stamp = parts.get("t", "")
    return int(stamp) if stamp.isascii() and stamp.isdigit() and len(stamp) <= 12 else None


def _workflow_id_of(body: bytes) -> tuple[uuid.UUID, dict[str, Any]] | None:
    try:
        document = orjson.loads(body)
        return uuid.UUID(str(document["workflow_id"])), document
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


async def verify_delivery(
    db: Database, tenant_slug: str, signature: str, body: bytes, *, now: float | None = None
) -> Delivery:
    """The delivery, if ``signature`` is the workflow's ``X-Castmetrics-Signature`` of ``body`` (the
    workflow named by the body's ``workflow_id``, of the tenant named by ``tenant_slug``) from within
    ``TOLERANCE_SECONDS`` of now. Raises ``Unauthorized`` otherwise."""
    stamp = _timestamp_of(signature)
    parsed = _workflow_id_of(body)
    now = time.time() if now is None else now
    if stamp is None or parsed is None or abs(now - stamp) > TOLERANCE_SECONDS:
        raise Unauthorized(REFUSED)
    workflow_id, document = parsed
    async with db.transaction() as session:
        # No tenant context yet: the SECURITY DEFINER function answers a slug's id and nothing else.
        tenant_id = await session.scalar(text("SELECT id FROM measurement_tenants(:slugs)"), {"slugs": [tenant_slug]})
    if tenant_id is None:
        raise Unauthorized(REFUSED)
    async with db.tenant_transaction(tenant_id) as session:
        secret = await session.scalar(select(Workflow.secret).where(Workflow.id == workflow_id))
    if secret is None or not hmac.compare_digest(sign(secret, stamp, body).encode(), signature.encode()):
        raise Unauthorized(REFUSED)
    execution_id, event = document.get("execution_id"), document.get("event")
    return Delivery(
        tenant_id=tenant_id,
        workflow_id=workflow_id,
        execution_id=execution_id if isinstance(execution_id, str) else None,
        event=event if isinstance(event, str) else None,
    )


async def _body(request: Request) -> bytes:
    """The request body, refused (413) past ``MAX_BODY_BYTES`` without reading the rest."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ContentTooLarge(f"a demo webhook delivery is at most {MAX_BODY_BYTES} bytes", limit=MAX_BODY_BYTES)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/webhook/{tenant_slug}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Demo webhook receiver (no login)",
    responses={401: {"description": "Unsigned, badly signed, stale, or for no such tenant or workflow"}},
)
async def receive_demo_webhook(
    tenant_slug: Annotated[str, Path(max_length=100)],
    request: Request,
    x_castmetrics_signature: Annotated[str, Header(max_length=200)] = "",
) -> Response:
    """Receives a workflow's webhook delivery for the demo: the JSON body (at most 64 KB) names the
    `workflow_id`, and `X-Castmetrics-Signature` must be that workflow's signature of the body
    (`t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`) from within 5 minutes. A valid delivery answers 204
    and is logged as `workflows.demo_webhook_received`; anything else answers 401. Only present when
    `CASTMETRICS_DEMO_WEBHOOK_RECEIVER` is on (`serve --demo` on the embedded database)."""
    body = await _body(request)
    delivery = await verify_delivery(get_database(request), tenant_slug, x_castmetrics_signature, body)
    log.info(
        "workflows.demo_webhook_received",
        tenant_id=str(delivery.tenant_id),
        workflow_id=str(delivery.workflow_id),
        execution_id=delivery.execution_id,
        trigger_event=delivery.event,  # structlog keeps `event` for the message
        delivery=request.headers.get("x-castmetrics-delivery"),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
