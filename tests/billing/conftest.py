"""Billing fixtures: a local HTTP server standing in for Stripe's API, and an app pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.factories.billing import PRICE_ENTERPRISE, PRICE_PRO, WEBHOOK_SECRET
from tests.support.http import asgi_client
from tests.support.stripe import FakeStripe, serving_fake_stripe


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
