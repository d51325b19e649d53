"""Billing fixtures: a local HTTP server standing in for Stripe's API, an app pointed at it, and webhook
deliveries signed the way Stripe signs them (with the library's own helper)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import stripe
from pydantic import SecretStr
from sqlalchemy import text

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.conftest import asgi_client

WEBHOOK_SECRET = "whsec_castmetrics_tests"
PRICE_PRO = "price_pro_test"
PRICE_ENTERPRISE = "price_enterprise_test"


@dataclass
class FakeStripe:
    """What the stand-in for Stripe's API received: (path, form fields) per request."""

    base: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def to(self, path: str) -> list[dict[str, str]]:
        return [form for got, form in self.requests if got == path]


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            form = {key: values[-1] for key, values in parse_qs(body).items()}
            fake.requests.append((self.path, form))
            n = len(fake.requests)
            objects: dict[str, dict[str, Any]] = {
                "/v1/customers": {"id": f"cus_test_{n}", "object": "customer", "email": form.get("email")},
                "/v1/checkout/sessions": {
                    "id": f"cs_test_{n}", "object": "checkout.session", "url": f"https://checkout.stripe.test/{n}"
                },
                "/v1/billing_portal/sessions": {
                    "id": f"bps_test_{n}", "object": "billing_portal.session", "url": f"https://portal.stripe.test/{n}"
                },
            }  # fmt: skip
            found = objects.get(self.path)
            payload = json.dumps(found or {"error": {"type": "invalid_request_error", "message": "no such route"}})
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving_fake_stripe() -> Iterator[FakeStripe]:
    """The Stripe stand-in on a local port (its address in ``base``) while the block runs."""
    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with serving_fake_stripe() as fake:
        yield fake


@pytest.fixture
def billing_settings(settings: Settings, fake_stripe: FakeStripe) -> Settings:
    return settings.model_copy(
        update={
            "stripe_secret_key": SecretStr("sk_test_castmetrics"),
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "stripe_price_pro": PRICE_PRO,
            "stripe_price_enterprise": PRICE_ENTERPRISE,
            "stripe_api_base": fake_stripe.base,
        }
    )


@pytest.fixture
async def billing(billing_settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(billing_settings, database=db)) as http:
        yield http


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


def signed(event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):  # type: ignore[no-untyped-def]
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
