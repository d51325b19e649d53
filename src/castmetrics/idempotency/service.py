"""``Idempotency-Key`` on creating POSTs: a repeat answers the first result.

The auth dependency claims the key inside the request's own transaction (so the claim commits exactly
when the created resource does); ``IdempotencyMiddleware`` then stores the answer. A repeat with the same
body replays it (``Idempotent-Replayed: true``); the same key with another body is a 422; a repeat that
arrives while the first is still answering is a 409.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import structlog
from fastapi import Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from castmetrics.db.session import Database
from castmetrics.errors import Conflict, Invalid

log = structlog.get_logger(__name__)
HEADER = "idempotency-key"
STATE_KEY = "idempotency_claim"
KEEP_HOURS = 24
MAX_STORED_BYTES = 1024 * 1024
SECRET_FIELDS = frozenset({"key", "access_token", "refresh_token", "password", "secret"})


class Replay(Exception):
    """Raised by the claim when the key already has an answer; turned into that answer."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__("idempotent replay")
        self.status_code = status_code
        self.body = body


async def claim(request: Request, session: AsyncSession, tenant_id: uuid.UUID, actor: str) -> None:
    """For a POST carrying the header: replay a stored answer, or claim the key in this transaction.

    Keys belong to the credential's actor (a user or an API key), not to the whole tenant: another
    member of the team reusing a key never receives someone else's answer."""
    given = request.headers.get(HEADER)
    if request.method != "POST" or given is None:
        return
    if not 1 <= len(given) <= 255:
        raise Invalid("the Idempotency-Key header must be 1 to 255 characters", parameter="Idempotency-Key")
    key = f"{actor}:{given}"
    digest = hashlib.sha256(request.url.path.encode() + b"\n" + await request.body()).digest()
    inserted = await session.execute(
        text(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES (:t, :k, :h) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"t": tenant_id, "k": key, "h": digest},
    )
    if inserted.first() is not None:
        request.scope.setdefault("state", {})[STATE_KEY] = (str(tenant_id), key)
        return
    row = (
        await session.execute(
            text("SELECT request_hash, status_code, response FROM idempotency_keys WHERE key = :k"), {"k": key}
        )
    ).one()
    if bytes(row.request_hash) != digest:
        raise Invalid("this Idempotency-Key was used with another request", parameter="Idempotency-Key")
    if row.status_code is None:
        raise Conflict("a request with this Idempotency-Key is still being answered; retry shortly")
    raise Replay(row.status_code, row.response)


class IdempotencyMiddleware:
    """Stores the answer of a request whose key was claimed (successes only: a failed request rolled
    its claim back with everything else)."""

    def __init__(self, app: ASGIApp, db_of: Any) -> None:
        self.app = app
        self.db_of = db_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status = 0
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and sum(map(len, chunks)) < MAX_STORED_BYTES:
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        claimed = scope.get("state", {}).get(STATE_KEY)
        if claimed is None or not 200 <= status < 300:
            return
        tenant_id, key = claimed
        body = b"".join(chunks)
        try:
            response = json.loads(body) if body else None
        except ValueError:
            response = None
        if isinstance(response, dict):
            # Secrets shown once (a new API key) are never stored: a replay answers them as null.
            response = {k: (None if k in SECRET_FIELDS else v) for k, v in response.items()}
        db: Database = self.db_of()
        async with db.tenant_transaction(tenant_id) as session:
            await session.execute(
                text("UPDATE idempotency_keys SET status_code = :s, response = CAST(:r AS jsonb) WHERE key = :k"),
                {"s": status, "r": json.dumps(response), "k": key},
            )
