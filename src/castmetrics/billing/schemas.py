"""Request and response shapes of billing: checkout, the customer portal, the webhook's answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from castmetrics.billing.service import Outcome

PaidTier = Literal["pro", "enterprise"]


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: PaidTier = Field(description="The tier to subscribe to.")


class StripeSessionOut(BaseModel):
    id: str = Field(description="Stripe's id of the Checkout or portal session.")
    url: str = Field(description="Where to send the user's browser.")


class WebhookOut(BaseModel):
    status: Outcome = Field(
        description="applied; stale (older than the state already applied: nothing changed); ignored (no tenant, "
        "or an event or price this platform does not act on); duplicate (an event id already received)."
    )
