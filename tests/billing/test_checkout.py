"""Checkout and portal sessions, created through the Stripe library against a local stand-in for Stripe."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from tests.factories.billing import PRICE_ENTERPRISE, PRICE_PRO, stripe_event, subscription
from tests.support.stripe import FakeStripe


async def test_checkout_creates_the_customer_once(
    billing: httpx.AsyncClient, make_team, db, fake_stripe: FakeStripe
) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")

    first = await billing.post("/v1/billing/checkout", json={"tier": "pro"}, headers=team.auth("owner"))
    second = await billing.post("/v1/billing/checkout", json={"tier": "enterprise"}, headers=team.auth("owner"))

    assert first.status_code == second.status_code == 201, first.text
    assert first.json()["url"].startswith("https://checkout.stripe.test/") and first.json()["id"].startswith("cs_")
    [customer] = fake_stripe.to("/v1/customers")
    assert customer["metadata[tenant_id]"] == str(team.tenant_id) and customer["email"] == team.emails["owner"]
    sessions = fake_stripe.to("/v1/checkout/sessions")
    assert [s["line_items[0][price]"] for s in sessions] == [PRICE_PRO, PRICE_ENTERPRISE]
    for checkout, tier in zip(sessions, ("pro", "enterprise"), strict=True):
        assert checkout["mode"] == "subscription" and checkout["line_items[0][quantity]"] == "1"
        assert checkout["customer"] == "cus_test_1" and checkout["client_reference_id"] == str(team.tenant_id)
        assert checkout["metadata[tenant_id]"] == str(team.tenant_id) and checkout["metadata[tier]"] == tier
        assert checkout["subscription_data[metadata][tenant_id]"] == str(team.tenant_id)
        assert checkout["success_url"].startswith("http://127.0.0.1:8000/")
    async with db.tenant_transaction(team.tenant_id) as session:
        stored = await session.scalar(
            text("SELECT stripe_customer_id FROM users WHERE id = :u"), {"u": team.user_ids["owner"]}
        )
    assert stored == "cus_test_1"


async def test_portal_needs_a_customer_first(billing: httpx.AsyncClient, make_team, fake_stripe: FakeStripe) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")

    early = await billing.post("/v1/billing/portal", headers=team.auth("owner"))
    await billing.post("/v1/billing/checkout", json={"tier": "pro"}, headers=team.auth("owner"))
    opened = await billing.post("/v1/billing/portal", headers=team.auth("owner"))

    assert early.status_code == 409 and early.headers["content-type"] == "application/problem+json"
    assert opened.status_code == 201 and opened.json()["url"].startswith("https://portal.stripe.test/")
    [portal] = fake_stripe.to("/v1/billing_portal/sessions")
    assert portal["customer"] == "cus_test_1" and portal["return_url"] == "http://127.0.0.1:8000/"


async def test_billing_needs_the_billing_permission(billing: httpx.AsyncClient, make_team, fake_stripe) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    for role in ("admin", "viewer"):
        refused = await billing.post("/v1/billing/checkout", json={"tier": "pro"}, headers=team.auth(role))
        assert refused.status_code == 403
    assert (
        await billing.post("/v1/billing/checkout", json={"tier": "gold"}, headers=team.auth("owner"))
    ).status_code == 422
    assert fake_stripe.requests == []


async def test_without_stripe_billing_answers_503_and_the_rest_works(client: httpx.AsyncClient, make_team) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    event = stripe_event("customer.subscription.created", subscription(tenant_id=team.tenant_id))

    answers = [
        await client.post("/v1/billing/checkout", json={"tier": "pro"}, headers=team.auth("owner")),
        await client.post("/v1/billing/portal", headers=team.auth("owner")),
        await client.post("/v1/billing/webhook", json=event, headers={"Stripe-Signature": "t=1,v1=00"}),
    ]

    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "CASTMETRICS_STRIPE" in answer.json()["detail"] and "retry-after" not in answer.headers
    assert (await client.get("/v1/podcasts", headers=team.auth("owner"))).status_code == 200
