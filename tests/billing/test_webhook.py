"""Stripe webhooks: verified, recorded once per event id, applied in Stripe's order, never crossing tenants."""

from __future__ import annotations

import time
import uuid

import httpx
from sqlalchemy import text

from castmetrics.db.session import Database
from tests.factories.billing import (
    PRICE_ENTERPRISE,
    billing_state,
    deliver,
    set_customer,
    signed,
    stripe_event,
    subscription,
)


async def audit_entries(db: Database, tenant_id: uuid.UUID, entity_type: str = "tenant") -> list[dict]:  # type: ignore[type-arg]
    async with db.tenant_transaction(tenant_id) as session:
        rows = await session.execute(
            text(
                "SELECT actor_type, actor_id, action, changes FROM audit_log "
                "WHERE entity_type = :t AND actor_id = 'stripe' ORDER BY occurred_at"
            ),
            {"t": entity_type},
        )
        return [dict(row._mapping) for row in rows]


async def test_subscription_created_switches_tier_and_quotas_at_once(billing: httpx.AsyncClient, make_team, db) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    before = await billing.get("/v1/tenant/usage", headers=team.auth("owner"))
    assert before.json()["quotas"]["podcasts"]["limit"] == 3

    answer = await deliver(
        billing, stripe_event("customer.subscription.created", subscription(tenant_id=team.tenant_id))
    )

    assert answer.status_code == 200 and answer.json() == {"status": "applied"}
    after = await billing.get("/v1/tenant/usage", headers=team.auth("owner"))
    assert after.json()["subscription_tier"] == "pro" and after.json()["quotas"]["podcasts"]["limit"] == 50
    state = await billing_state(db, team.tenant_id)
    assert (state["subscription_tier"], state["subscription_status"], state["status"]) == ("pro", "active", "active")
    [entry] = await audit_entries(db, team.tenant_id)
    assert entry["action"] == "customer.subscription.created"
    assert entry["changes"]["subscription_tier"] == {"before": "free", "after": "pro"}
    assert entry["changes"]["subscription_status"] == {"before": "none", "after": "active"}


async def test_unsigned_badly_signed_and_old_deliveries_are_refused(billing: httpx.AsyncClient, make_team, db) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    event = stripe_event("customer.subscription.created", subscription(tenant_id=team.tenant_id))
    body, headers = signed(event)

    unsigned = await billing.post("/v1/billing/webhook", content=body, headers={"Content-Type": "application/json"})
    wrong_secret = await deliver(billing, event, secret="whsec_someone_else")
    six_minutes_old = await deliver(billing, event, timestamp=int(time.time()) - 360)
    tampered = await billing.post("/v1/billing/webhook", content=body.replace(b"active", b"trialing"), headers=headers)
    garbage = await billing.post("/v1/billing/webhook", content=body, headers={"Stripe-Signature": "nonsense"})

    for refused in (unsigned, wrong_secret, six_minutes_old, tampered, garbage):
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    state = await billing_state(db, team.tenant_id)
    assert (state["subscription_tier"], state["subscription_status"], state["events"]) == ("free", "none", [])
    # the same delivery, fresh and signed, is accepted
    assert (await billing.post("/v1/billing/webhook", content=body, headers=headers)).json() == {"status": "applied"}


async def test_a_signature_from_the_future_is_refused(billing: httpx.AsyncClient, make_team, db) -> None:  # type: ignore[no-untyped-def]
    # A signature dated ahead (a leaked secret, or a captured delivery re-signed with a later time) would stay
    # replayable until that time plus the tolerance: beyond 5 minutes ahead it is refused like an old one.
    team = await make_team("free")
    event = stripe_event("customer.subscription.created", subscription(tenant_id=team.tenant_id))

    six_minutes_ahead = await deliver(billing, event, timestamp=int(time.time()) + 360)
    a_day_ahead = await deliver(billing, event, timestamp=int(time.time()) + 86_400)

    for refused in (six_minutes_ahead, a_day_ahead):
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    state = await billing_state(db, team.tenant_id)
    assert (state["subscription_tier"], state["events"]) == ("free", [])
    # a clock a little ahead of ours (within the tolerance) is still accepted
    one_minute_ahead = await deliver(billing, event, timestamp=int(time.time()) + 60)
    assert one_minute_ahead.json() == {"status": "applied"}


async def test_a_repeated_event_is_a_duplicate_and_applied_once(billing: httpx.AsyncClient, make_team, db) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    event = stripe_event("customer.subscription.created", subscription(tenant_id=team.tenant_id))

    first = await deliver(billing, event)
    second = await deliver(billing, event)

    assert first.json() == {"status": "applied"} and second.json() == {"status": "duplicate"}
    assert second.status_code == 200
    assert len(await audit_entries(db, team.tenant_id)) == 1
    assert (await billing_state(db, team.tenant_id))["events"] == [(event["id"], "applied")]


async def test_an_older_event_delivered_late_is_stale(billing: httpx.AsyncClient, make_team, db) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    now = int(time.time())
    created = stripe_event("customer.subscription.created", subscription(tenant_id=team.tenant_id), created=now - 60)
    updated = stripe_event(
        "customer.subscription.updated",
        subscription(tenant_id=team.tenant_id, status="past_due", price=PRICE_ENTERPRISE),
        created=now - 10,
    )

    assert (await deliver(billing, updated)).json() == {"status": "applied"}
    assert (await deliver(billing, created)).json() == {"status": "stale"}

    state = await billing_state(db, team.tenant_id)
    assert (state["subscription_tier"], state["subscription_status"]) == ("enterprise", "past_due")
    assert state["events"] == [(updated["id"], "applied"), (created["id"], "stale")]
    # an invoice older than the subscription state is stale as well; equal times apply in arrival order
    invoice = {"object": "invoice", "customer": None, "subscription": "sub_test_1",
               "metadata": {"tenant_id": str(team.tenant_id)}}  # fmt: skip
    old_invoice = stripe_event("invoice.paid", invoice, created=now - 30)
    assert (await deliver(billing, old_invoice)).json() == {"status": "stale"}
    same_time = stripe_event(
        "customer.subscription.updated", subscription(tenant_id=team.tenant_id, status="active"), created=now - 10
    )
    assert (await deliver(billing, same_time)).json() == {"status": "applied"}
    state = await billing_state(db, team.tenant_id)
    assert (state["subscription_tier"], state["subscription_status"]) == ("pro", "active")


async def test_cancelled_at_period_end_keeps_the_tier_until_deleted_and_keeps_data(  # type: ignore[no-untyped-def]
    billing: httpx.AsyncClient, make_team, db
) -> None:
    team = await make_team("free")
    now = int(time.time())
    await deliver(billing, stripe_event("customer.subscription.created", subscription(tenant_id=team.tenant_id),
                                        created=now - 30))  # fmt: skip
    for n in range(4):  # more than the free tier's 3
        made = await billing.post("/v1/podcasts", json={"name": f"Show {n}"}, headers=team.auth("owner"))
        assert made.status_code == 201, made.text

    cancelling = subscription(tenant_id=team.tenant_id, cancel_at_period_end=True)
    await deliver(billing, stripe_event("customer.subscription.updated", cancelling, created=now - 20))
    assert (await billing_state(db, team.tenant_id))["subscription_tier"] == "pro"

    ended = subscription(tenant_id=team.tenant_id, status="canceled")
    answer = await deliver(billing, stripe_event("customer.subscription.deleted", ended, created=now - 10))

    assert answer.json() == {"status": "applied"}
    state = await billing_state(db, team.tenant_id)
    assert (state["subscription_tier"], state["subscription_status"], state["status"]) == ("free", "canceled", "active")
    listed = await billing.get("/v1/podcasts", headers=team.auth("owner"))
    assert listed.status_code == 200 and len(listed.json()["items"]) == 4  # nothing deleted
    refused = await billing.post("/v1/podcasts", json={"name": "One too many"}, headers=team.auth("owner"))
    assert refused.status_code == 402


async def test_invoice_events_move_the_subscription_status(billing: httpx.AsyncClient, make_team, db) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    now = int(time.time())
    await set_customer(db, team.tenant_id, team.user_ids["owner"], "cus_invoices")
    created = subscription(customer="cus_invoices")  # found by its customer, no metadata
    assert (
        await deliver(billing, stripe_event("customer.subscription.created", created, created=now - 30))
    ).json() == {"status": "applied"}
    invoice = {"object": "invoice", "customer": "cus_invoices", "customer_email": "accounts@example.com",
               "parent": {"subscription_details": {"subscription": "sub_test_1", "metadata": {}}}}  # fmt: skip

    await deliver(billing, stripe_event("invoice.payment_failed", invoice, created=now - 20))
    failed = await billing_state(db, team.tenant_id)
    await deliver(billing, stripe_event("invoice.paid", invoice, created=now - 10))
    paid = await billing_state(db, team.tenant_id)

    assert (failed["subscription_tier"], failed["subscription_status"]) == ("pro", "past_due")
    assert (paid["subscription_tier"], paid["subscription_status"]) == ("pro", "active")
    assert paid["billing_email"] == "accounts@example.com"
    actions = [entry["action"] for entry in await audit_entries(db, team.tenant_id)]
    assert actions == ["customer.subscription.created", "invoice.payment_failed", "invoice.paid"]


async def test_checkout_completed_links_the_customer_and_subscription(
    billing: httpx.AsyncClient, make_team, db
) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    session = {"object": "checkout.session", "id": "cs_1", "client_reference_id": str(team.tenant_id),
               "customer": "cus_new", "subscription": "sub_new", "customer_details": {"email": "billing@example.com"},
               "metadata": {"tenant_id": str(team.tenant_id), "tier": "pro"}}  # fmt: skip

    answer = await deliver(billing, stripe_event("checkout.session.completed", session))

    assert answer.json() == {"status": "applied"}
    async with db.tenant_transaction(team.tenant_id) as s:
        row = (await s.execute(text("SELECT stripe_customer_id, stripe_subscription_id FROM users WHERE id = :u"),
                               {"u": team.user_ids["owner"]})).one()  # fmt: skip
    assert tuple(row) == ("cus_new", "sub_new")  # the first owner carries them
    state = await billing_state(db, team.tenant_id)
    assert (state["billing_email"], state["subscription_tier"]) == ("billing@example.com", "free")
    assert await audit_entries(db, team.tenant_id, "user")
    # later events find the tenant by the customer alone
    later = await deliver(billing, stripe_event("customer.subscription.created", subscription(customer="cus_new")))
    assert later.json() == {"status": "applied"}
    assert (await billing_state(db, team.tenant_id))["subscription_tier"] == "pro"


async def test_an_unknown_customer_or_tenant_is_ignored(billing: httpx.AsyncClient, make_team, db) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    nobody = await deliver(billing, stripe_event("customer.subscription.created", subscription(customer="cus_nobody")))
    no_tenant = await deliver(
        billing, stripe_event("customer.subscription.created", subscription(tenant_id=uuid.uuid4(), customer=None))
    )
    unknown_price = await deliver(
        billing, stripe_event("customer.subscription.created", subscription(tenant_id=team.tenant_id, price="price_x"))
    )

    assert nobody.status_code == no_tenant.status_code == 200
    assert nobody.json() == no_tenant.json() == unknown_price.json() == {"status": "ignored"}
    state = await billing_state(db, team.tenant_id)
    assert (state["subscription_tier"], state["subscription_status"]) == ("free", "none")


async def test_metadata_names_one_tenant_and_never_crosses(billing: httpx.AsyncClient, make_team, db) -> None:  # type: ignore[no-untyped-def]
    alpha, beta = await make_team("free"), await make_team("free")
    await set_customer(db, alpha.tenant_id, alpha.user_ids["owner"], "cus_alpha")

    for_beta = await deliver(
        billing, stripe_event("customer.subscription.created", subscription(tenant_id=beta.tenant_id, customer=None))
    )
    # beta's id on alpha's customer: the two disagree, so nothing is applied anywhere
    crossing = await deliver(
        billing,
        stripe_event(
            "customer.subscription.updated",
            subscription(tenant_id=beta.tenant_id, customer="cus_alpha", price=PRICE_ENTERPRISE),
        ),  # fmt: skip
    )

    assert for_beta.json() == {"status": "applied"} and crossing.json() == {"status": "ignored"}
    alpha_state, beta_state = await billing_state(db, alpha.tenant_id), await billing_state(db, beta.tenant_id)
    assert (alpha_state["subscription_tier"], alpha_state["events"]) == ("free", [])
    assert beta_state["subscription_tier"] == "pro" and len(beta_state["events"]) == 1
    assert await audit_entries(db, alpha.tenant_id) == []


async def test_the_customer_lookup_reveals_a_tenant_id_and_nothing_else(make_team, db) -> None:  # type: ignore[no-untyped-def]
    team = await make_team("free")
    await set_customer(db, team.tenant_id, team.user_ids["owner"], "cus_lookup")

    async with db.transaction() as session:  # no tenant context, as the webhook starts
        found = await session.scalar(text("SELECT billing_tenant_of_customer('cus_lookup')"))
        missing = await session.scalar(text("SELECT billing_tenant_of_customer('cus_missing')"))
        visible_users = await session.scalar(text("SELECT count(*) FROM users"))

    assert (found, missing, visible_users) == (team.tenant_id, None, 0)
