"""Billing test data: Stripe events and subscriptions, signed webhook deliveries, and a tenant's billing state."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import stripe
from sqlalchemy import text

from castmetrics.db.session import Database

WEBHOOK_SECRET = "whsec_castmetrics_tests"
PRICE_PRO = "price_pro_test"
PRICE_ENTERPRISE = "price_enterprise_test"


def stripe_event(
    type_: str, obj: dict[str, Any], *, created: int | None = None, id_: str | None = None
) -> dict[str, Any]:
    return {
        "id": id_ or f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "api_version": "2025-06-30.basil",
        "type": type_, "created": created if created is not None else int(time.time()), "livemode": False,
        "data": {"object": obj},
    }  # fmt: skip


def subscription(
    *, tenant_id: uuid.UUID | None = None, customer: str | None = "cus_sub", status: str = "active",
    price: str = PRICE_PRO, id_: str = "sub_test_1", cancel_at_period_end: bool = False,
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": id_, "object": "subscription", "customer": customer, "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "metadata": {"tenant_id": str(tenant_id)} if tenant_id else {},
        "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item",
                                              "price": {"id": price, "object": "price"}}]},
    }  # fmt: skip


def signed(
    event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery, signed as Stripe signs (``t=…,v1=…``)."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}


async def deliver(http: httpx.AsyncClient, event: dict[str, Any], **signing: Any) -> httpx.Response:
    body, headers = signed(event, **signing)
    return await http.post("/v1/billing/webhook", content=body, headers=headers)


async def billing_state(db: Database, tenant_id: uuid.UUID) -> dict[str, Any]:
    async with db.tenant_transaction(tenant_id) as session:
        row = (
            await session.execute(
                text(
                    "SELECT subscription_tier, subscription_status, billing_email, status FROM tenants WHERE id = :id"
                ),
                {"id": tenant_id},
            )
        ).one()
        events = (await session.execute(text("SELECT id, outcome FROM stripe_events ORDER BY received_at"))).all()
    return {**row._asdict(), "events": [tuple(e) for e in events]}


async def set_customer(db: Database, tenant_id: uuid.UUID, user_id: uuid.UUID, customer: str) -> None:
    async with db.tenant_transaction(tenant_id) as session:
        await session.execute(
            text("UPDATE users SET stripe_customer_id = :c WHERE id = :u"), {"c": customer, "u": user_id}
        )
