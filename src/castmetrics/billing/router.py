"""Billing routes: Stripe Checkout and the customer portal for the tenant's owner, and Stripe's webhook."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, status

from castmetrics.auth.dependencies import requires, settings_of
from castmetrics.auth.principal import Principal
from castmetrics.billing import service
from castmetrics.billing.schemas import CheckoutIn, StripeSessionOut, WebhookOut
from castmetrics.http.deps import get_database

router = APIRouter(prefix="/v1/billing", tags=["billing"])

NOT_CONFIGURED: dict[int | str, dict[str, Any]] = {503: {"description": "Stripe is not configured on this server"}}


@router.post(
    "/checkout",
    status_code=status.HTTP_201_CREATED,
    response_model=StripeSessionOut,
    summary="Start a Stripe Checkout",
    responses=NOT_CONFIGURED,
)
async def checkout(
    body: CheckoutIn, request: Request, principal: Annotated[Principal, requires("billing", "update")]
) -> StripeSessionOut:
    """Create a Stripe Checkout Session subscribing the tenant to `tier` (`pro` or `enterprise`) and answer
    its `id` and `url` (send the browser there). The tenant's Stripe customer is created on the first
    checkout and reused after. The tier changes when Stripe's webhook reports the subscription. 503
    when Stripe or the tier's price is not configured."""
    started = await service.start_checkout(principal.session, settings_of(request), principal, body.tier)
    return StripeSessionOut(id=started.id, url=started.url)


@router.post(
    "/portal",
    status_code=status.HTTP_201_CREATED,
    response_model=StripeSessionOut,
    summary="Open the Stripe customer portal",
    responses={409: {"description": "The tenant has no Stripe customer yet"}, **NOT_CONFIGURED},
)
async def portal(request: Request, principal: Annotated[Principal, requires("billing", "update")]) -> StripeSessionOut:
    """Create a customer-portal session (change plan, payment method, cancel) for the tenant's Stripe
    customer and answer its `id` and `url`. 409 before the tenant's first checkout; 503 when Stripe is
    not configured."""
    opened = await service.open_portal(principal.session, settings_of(request))
    return StripeSessionOut(id=opened.id, url=opened.url)


@router.post(
    "/webhook",
    response_model=WebhookOut,
    summary="Stripe webhook (no login; signed by Stripe)",
    responses={
        400: {"description": "Unsigned, badly signed, or signed more than 5 minutes ago: nothing changed"},
        **NOT_CONFIGURED,
    },
)
async def webhook(request: Request, stripe_signature: Annotated[str | None, Header()] = None) -> WebhookOut:
    """Receives Stripe's events, verified against `CASTMETRICS_STRIPE_WEBHOOK_SECRET` (`Stripe-Signature`,
    5 minutes' tolerance), and applies them from the payload before answering 200: checkout completion,
    subscription created, updated and deleted, invoices paid and failed, customer email changes. The
    tenant is the object's `metadata.tenant_id` or the one holding its customer. Each event id is applied
    once (a repeat answers `duplicate`); a subscription event older than the last one applied answers
    `stale` and changes nothing."""
    outcome = await service.receive(get_database(request), settings_of(request), await request.body(), stripe_signature)
    return WebhookOut(status=outcome)
