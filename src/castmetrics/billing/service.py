"""Billing through Stripe: Checkout and portal sessions, and applying verified webhook events to tenants.

A tenant's tier and ``subscription_status`` follow its Stripe subscription; its operator ``status`` is
never touched, and a downgrade deletes nothing (quotas only refuse new items over the new limit). Every
event is recorded once per tenant in ``stripe_events`` (a repeat is a duplicate) and subscription events
apply only if they are not older than the last one applied (``tenants.billing_state_at``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar

import stripe
import structlog
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit import service as audit
from castmetrics.auth.principal import Actor, Principal
from castmetrics.billing.models import StripeEvent
from castmetrics.config import Settings
from castmetrics.db.session import Database, set_tenant
from castmetrics.errors import Conflict, Invalid, InvalidSignature, NotConfigured, Unavailable
from castmetrics.identity.models import Role, User, UserRole
from castmetrics.tenancy.models import Tenant

log = structlog.get_logger(__name__)

T = TypeVar("T")
Outcome = Literal["applied", "stale", "ignored", "duplicate"]

STRIPE = Actor.system("stripe")
SIGNATURE_TOLERANCE_SECONDS = 300
# Subscription statuses that keep the paid tier, and those that drop the tenant to free. Any other
# (``incomplete``: the first payment is pending) records the status and leaves the tier as it is.
PAID_STATUSES = frozenset({"active", "trialing", "past_due"})
LAPSED_STATUSES = frozenset({"canceled", "unpaid", "incomplete_expired", "paused"})
SUBSCRIPTION_EVENTS = frozenset({"customer.subscription.created", "customer.subscription.updated"})
INVOICE_STATUS = {"invoice.paid": "active", "invoice.payment_failed": "past_due"}
TENANT_AUDITED = ("subscription_tier", "subscription_status", "billing_email")
USER_AUDITED = ("stripe_customer_id", "stripe_subscription_id")


@dataclass(frozen=True)
class StripeSession:
    """A Checkout or customer-portal session: where the user's browser goes next."""

    id: str
    url: str


@dataclass(frozen=True)
class Delivery:
    """A verified Stripe event: what applying it needs."""

    id: str
    type: str
    created: datetime
    object: dict[str, Any]


# --- outgoing calls -------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _client(api_key: str, api_base: str | None) -> stripe.StripeClient:
    return stripe.StripeClient(api_key, base_addresses={"api": api_base} if api_base else None)


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """The Stripe client of ``settings`` (its ``stripe_api_base`` when set); 503 without a secret key."""
    if settings.stripe_secret_key is None:
        raise NotConfigured("billing is not configured on this server: CASTMETRICS_STRIPE_SECRET_KEY is not set")
    return _client(settings.stripe_secret_key.get_secret_value(), settings.stripe_api_base)


def price_of(settings: Settings, tier: str) -> str:
    price = {"pro": settings.stripe_price_pro, "enterprise": settings.stripe_price_enterprise}.get(tier)
    if not price:
        raise NotConfigured(
            f"billing for the {tier} tier is not configured: CASTMETRICS_STRIPE_PRICE_{tier.upper()} is not set"
        )
    return price


def tier_of_prices(settings: Settings, price_ids: list[str]) -> str | None:
    """The tier whose price id a subscription's items carry (the higher one if both); ``None``: neither."""
    for tier, price in (("enterprise", settings.stripe_price_enterprise), ("pro", settings.stripe_price_pro)):
        if price and price in price_ids:
            return tier
    return None


async def _stripe(call: Awaitable[T]) -> T:
    try:
        return await call
    except stripe.StripeError as exc:
        log.warning("billing.stripe_error", error=str(exc)[:300], http_status=exc.http_status)
        raise Unavailable("Stripe refused or did not answer the request; try again later", retry_after=30) from exc


def _return_url(settings: Settings, outcome: str) -> str:
    base = settings.billing_return_url
    return f"{base}{'&' if '?' in base else '?'}checkout={outcome}"


async def _tenant_customer(session: AsyncSession) -> str | None:
    """The tenant's Stripe customer: the one any of its users carries (RLS scopes the query)."""
    statement = (
        select(User.stripe_customer_id).where(User.stripe_customer_id.is_not(None)).order_by(User.created_at).limit(1)
    )
    return await session.scalar(statement)


async def _set_user_billing(
    session: AsyncSession, user: User, actor: Actor, *, customer: str | None, subscription: str | None
) -> None:
    before = audit.snapshot(user, USER_AUDITED)
    if customer:
        user.stripe_customer_id = customer
    if subscription:
        user.stripe_subscription_id = subscription
    after = audit.snapshot(user, USER_AUDITED)
    if after != before:
        await audit.record(
            session, tenant_id=user.tenant_id, actor=actor, action="billing", entity_type="user",
            entity_id=user.id, before=before, after=after,
        )  # fmt: skip


async def start_checkout(session: AsyncSession, settings: Settings, principal: Principal, tier: str) -> StripeSession:
    """A Checkout Session subscribing the tenant to ``tier``. The tenant's Stripe customer is created on
    its first checkout (and kept on the calling user); later checkouts reuse it."""
    client = stripe_client(settings)
    price = price_of(settings, tier)
    tenant, user = principal.tenant, principal.user
    # The tenant's row lock makes two concurrent first checkouts create one customer, not two.
    await session.execute(select(Tenant.id).where(Tenant.id == tenant.id).with_for_update())
    customer_id = await _tenant_customer(session)
    if customer_id is None:
        customer = await _stripe(
            client.v1.customers.create_async(
                params={
                    "email": tenant.billing_email or user.email,
                    "name": tenant.name,
                    "metadata": {"tenant_id": str(tenant.id)},
                }
            )
        )
        customer_id = customer.id
        billing_user = await session.get_one(User, (user.tenant_id, user.id))
        await _set_user_billing(session, billing_user, principal.actor, customer=customer_id, subscription=None)
    checkout = await _stripe(
        client.v1.checkout.sessions.create_async(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "line_items": [{"price": price, "quantity": 1}],
                "client_reference_id": str(tenant.id),
                "metadata": {"tenant_id": str(tenant.id), "tier": tier, "user_id": str(user.id)},
                "subscription_data": {"metadata": {"tenant_id": str(tenant.id)}},
                "success_url": _return_url(settings, "success"),
                "cancel_url": _return_url(settings, "cancelled"),
            }
        )
    )
    log.info("billing.checkout_started", tier=tier, checkout_session=checkout.id)
    return StripeSession(id=checkout.id, url=checkout.url or "")


async def open_portal(session: AsyncSession, settings: Settings) -> StripeSession:
    """A customer-portal session for the tenant's Stripe customer (409 before its first checkout)."""
    client = stripe_client(settings)
    customer_id = await _tenant_customer(session)
    if customer_id is None:
        raise Conflict("the tenant has no Stripe customer yet: subscribe through POST /v1/billing/checkout first")
    portal = await _stripe(
        client.v1.billing_portal.sessions.create_async(
            params={"customer": customer_id, "return_url": settings.billing_return_url}
        )
    )
    return StripeSession(id=portal.id, url=portal.url)


# --- the webhook ----------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id_of(value: Any) -> str | None:
    """A Stripe reference, as an id or as an expanded object."""
    if isinstance(value, str) and value:
        return value
    found = _dict(value).get("id")
    return found if isinstance(found, str) and found else None


def _signed_at(signature: str | None) -> int:
    """The ``t=`` of a Stripe-Signature header that has verified: the first one, as the Stripe library reads it."""
    for item in (signature or "").split(","):
        parts = item.split("=", 2)
        if parts[0] == "t" and len(parts) > 1:
            return int(parts[1])
    raise InvalidSignature("the Stripe-Signature header has no timestamp")


def verify(settings: Settings, payload: bytes, signature: str | None) -> Delivery:
    """The event, if ``signature`` is Stripe's signature of ``payload`` with the webhook secret, dated
    within 5 minutes of now either way (the library checks only the past: a signature dated ahead would
    stay replayable until then); ``InvalidSignature`` (400) otherwise, ``NotConfigured`` (503) without a
    secret."""
    if settings.stripe_webhook_secret is None:
        raise NotConfigured("Stripe webhooks are not configured: CASTMETRICS_STRIPE_WEBHOOK_SECRET is not set")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, settings.stripe_webhook_secret.get_secret_value(), tolerance=SIGNATURE_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(
            "the Stripe-Signature header is missing, does not verify, or is older than 5 minutes"
        ) from exc
    except ValueError as exc:  # signed, but not JSON
        raise Invalid("the webhook body is not a Stripe event") from exc
    if _signed_at(signature) > time.time() + SIGNATURE_TOLERANCE_SECONDS:
        raise InvalidSignature("the Stripe-Signature header is dated more than 5 minutes in the future")
    document = event.to_dict()
    event_id, event_type, created = document.get("id"), document.get("type"), document.get("created")
    event_object = _dict(document.get("data")).get("object")
    if not (isinstance(event_id, str) and isinstance(event_type, str) and isinstance(created, int)):
        raise Invalid("the webhook body is not a Stripe event")
    if not isinstance(event_object, dict):
        raise Invalid("the webhook body is not a Stripe event")
    return Delivery(event_id, event_type, datetime.fromtimestamp(created, UTC), event_object)


def _claimed_tenant(event: Delivery) -> uuid.UUID | None:
    """The tenant the event's object names: its ``metadata.tenant_id`` (set by our checkout), a Checkout
    Session's ``client_reference_id``, or an invoice's subscription metadata."""
    obj = event.object
    invoice_parent = _dict(_dict(obj.get("parent")).get("subscription_details"))
    for candidate in (
        _dict(obj.get("metadata")).get("tenant_id"),
        obj.get("client_reference_id"),
        _dict(invoice_parent.get("metadata")).get("tenant_id"),
        _dict(_dict(obj.get("subscription_details")).get("metadata")).get("tenant_id"),
    ):
        if isinstance(candidate, str) and candidate:
            try:
                return uuid.UUID(candidate)
            except ValueError:
                log.warning("billing.webhook_bad_tenant_id", event_id=event.id, tenant_id=candidate[:64])
                return None
    return None


def _customer_of(event: Delivery) -> str | None:
    obj = event.object
    return _id_of(obj.get("id")) if obj.get("object") == "customer" else _id_of(obj.get("customer"))


async def _find_tenant(session: AsyncSession, event: Delivery) -> Tenant | None:
    """The tenant the event is for, locked, with the transaction acting for it; ``None`` if none is
    known, or if the object's metadata and its customer name different tenants (it never crosses)."""
    claimed = _claimed_tenant(event)
    customer = _customer_of(event)
    owner: uuid.UUID | None = None
    if customer:
        # No tenant context yet: the SECURITY DEFINER function answers the customer's tenant id only.
        owner = await session.scalar(text("SELECT billing_tenant_of_customer(:customer)"), {"customer": customer})
    if claimed is not None and owner is not None and claimed != owner:
        log.warning("billing.webhook_tenant_mismatch", event_id=event.id, claimed=str(claimed), owner=str(owner))
        return None
    tenant_id = claimed or owner
    if tenant_id is None:
        return None
    await set_tenant(session, tenant_id)
    return await session.scalar(select(Tenant).where(Tenant.id == tenant_id).with_for_update())


async def receive(db: Database, settings: Settings, payload: bytes, signature: str | None) -> Outcome:
    """Verify, record and apply one webhook delivery in one transaction; answers the outcome:
    ``applied``, ``stale``, ``ignored`` or ``duplicate``."""
    event = verify(settings, payload, signature)
    async with db.transaction() as session:
        tenant = await _find_tenant(session, event)
        if tenant is None:
            log.info("billing.webhook_ignored", event_id=event.id, type=event.type, reason="no tenant")
            return "ignored"
        recorded = await session.scalar(
            insert(StripeEvent)
            .values(tenant_id=tenant.id, id=event.id, type=event.type, created=event.created, outcome="pending")
            .on_conflict_do_nothing()
            .returning(StripeEvent.id)
        )
        if recorded is None:
            log.info("billing.webhook_duplicate", event_id=event.id, type=event.type, tenant_id=str(tenant.id))
            return "duplicate"
        outcome = await _apply(session, settings, tenant, event)
        await session.execute(
            update(StripeEvent)
            .where(StripeEvent.tenant_id == tenant.id, StripeEvent.id == event.id)
            .values(outcome=outcome)
        )
    log.info("billing.webhook_received", event_id=event.id, type=event.type, tenant_id=str(tenant.id), outcome=outcome)
    return outcome


async def _apply(session: AsyncSession, settings: Settings, tenant: Tenant, event: Delivery) -> Outcome:
    if event.type == "checkout.session.completed":
        return await _checkout_completed(session, tenant, event)
    if event.type in SUBSCRIPTION_EVENTS or event.type == "customer.subscription.deleted":
        return await _subscription_changed(session, settings, tenant, event)
    if event.type in INVOICE_STATUS:
        return await _invoice(session, tenant, event)
    if event.type == "customer.updated":
        email = event.object.get("email")
        await _change_tenant(session, tenant, event, billing_email=email if isinstance(email, str) and email else None)
        return "applied"
    return "ignored"


def _is_stale(tenant: Tenant, event: Delivery) -> bool:
    return tenant.billing_state_at is not None and event.created < tenant.billing_state_at


async def _change_tenant(session: AsyncSession, tenant: Tenant, event: Delivery, **fields: str | None) -> None:
    """Set the given tenant fields (a ``None`` keeps the field) and audit what changed."""
    before = audit.snapshot(tenant, TENANT_AUDITED)
    for name, value in fields.items():
        if value is not None:
            setattr(tenant, name, value)
    after = audit.snapshot(tenant, TENANT_AUDITED)
    if after != before:
        await audit.record(
            session, tenant_id=tenant.id, actor=STRIPE, action=event.type, entity_type="tenant",
            entity_id=tenant.id, before=before, after=after,
        )  # fmt: skip


async def _billing_user(session: AsyncSession, customer: str | None, user_hint: Any) -> User | None:
    """The user who carries the tenant's Stripe ids: the one with the customer, else the checkout's user
    (its metadata), else the tenant's first owner."""
    if customer:
        user = await session.scalar(
            select(User).where(User.stripe_customer_id == customer).order_by(User.created_at).limit(1)
        )
        if user is not None:
            return user
    if isinstance(user_hint, str):
        try:
            user = await session.scalar(select(User).where(User.id == uuid.UUID(user_hint)))
        except ValueError:
            user = None
        if user is not None:
            return user
    owners = (
        select(User)
        .join(UserRole, (UserRole.tenant_id == User.tenant_id) & (UserRole.user_id == User.id))
        .join(Role, (Role.tenant_id == UserRole.tenant_id) & (Role.id == UserRole.role_id))
        .where(Role.name == "owner", User.is_active.is_(True))
        .order_by(User.created_at)
        .limit(1)
    )
    return await session.scalar(owners)


async def _link_user(session: AsyncSession, event: Delivery, subscription: str | None) -> None:
    customer = _customer_of(event)
    user = await _billing_user(session, customer, _dict(event.object.get("metadata")).get("user_id"))
    if user is not None:
        await _set_user_billing(session, user, STRIPE, customer=customer, subscription=subscription)


async def _checkout_completed(session: AsyncSession, tenant: Tenant, event: Delivery) -> Outcome:
    await _link_user(session, event, _id_of(event.object.get("subscription")))
    email = _dict(event.object.get("customer_details")).get("email")
    await _change_tenant(session, tenant, event, billing_email=email if isinstance(email, str) and email else None)
    return "applied"


def _price_ids(subscription: dict[str, Any]) -> list[str]:
    items = _dict(subscription.get("items")).get("data")
    found = (_id_of(_dict(item).get("price")) for item in (items if isinstance(items, list) else []))
    return [price for price in found if price]


async def _subscription_changed(session: AsyncSession, settings: Settings, tenant: Tenant, event: Delivery) -> Outcome:
    if _is_stale(tenant, event):
        return "stale"
    status = event.object.get("status")
    status = status if isinstance(status, str) and status else "unknown"
    if event.type == "customer.subscription.deleted":
        # At period end (or at once when cancelled so): back to free, nothing deleted.
        tier, status = "free", "canceled"
    else:
        paid_tier = tier_of_prices(settings, _price_ids(event.object))
        if paid_tier is None:
            log.warning("billing.unknown_price", event_id=event.id, prices=_price_ids(event.object)[:5])
            return "ignored"
        if status in PAID_STATUSES:  # cancel_at_period_end keeps the tier until the deletion
            tier = paid_tier
        elif status in LAPSED_STATUSES:
            tier = "free"
        else:
            tier = tenant.subscription_tier
        await _link_user(session, event, _id_of(event.object.get("id")))
    tenant.billing_state_at = event.created
    await _change_tenant(session, tenant, event, subscription_tier=tier, subscription_status=status)
    return "applied"


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    """The subscription an invoice bills (``subscription`` before Stripe's 2025 API, ``parent`` since)."""
    parent = _dict(_dict(invoice.get("parent")).get("subscription_details"))
    return _id_of(invoice.get("subscription")) or _id_of(parent.get("subscription"))


async def _invoice(session: AsyncSession, tenant: Tenant, event: Delivery) -> Outcome:
    """Payment news: the status moves (never older than the subscription state applied, never reviving a
    cancelled subscription); the subscription events stay the authority on the tier."""
    if _is_stale(tenant, event):
        return "stale"
    status = None
    if _invoice_subscription(event.object) and tenant.subscription_status != "canceled":
        status = INVOICE_STATUS[event.type]
    email = event.object.get("customer_email")
    await _change_tenant(
        session,
        tenant,
        event,
        subscription_status=status,
        billing_email=email if isinstance(email, str) and email else None,
    )
    return "applied"
