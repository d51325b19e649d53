"""The preferences service: defaults agree with the table, ``wants``, and the unsubscribe token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from castmetrics.auth import tokens
from castmetrics.auth.principal import Actor
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.preferences import service as preferences
from castmetrics.preferences.schemas import CATEGORIES, DEFAULTS, EmailPreferencesUpdate
from tests.factories.identity import load_user, sign_up


async def test_the_tables_defaults_are_the_services_defaults(client: httpx.AsyncClient, db: Database) -> None:
    # given a row inserted with nothing but its key
    owner = await sign_up(client, "column-defaults")
    user = await load_user(db, owner)
    async with db.tenant_transaction(owner.tenant_id) as session:
        before = await preferences.get(session, user)
        await session.execute(
            text("INSERT INTO email_preferences (tenant_id, user_id) VALUES (:t, :u)"),
            {"t": owner.tenant_id, "u": owner.user_id},
        )
        after = await preferences.get(session, user)
    # then a user with a fresh row and a user without one receive the same categories
    assert before.updated_at is None and after.updated_at is not None
    assert {c: getattr(after, c) for c in CATEGORIES} == {c: getattr(before, c) for c in CATEGORIES} == DEFAULTS


async def test_wants_follows_defaults_then_changes(client: httpx.AsyncClient, db: Database) -> None:
    owner = await sign_up(client, "wants")
    user = await load_user(db, owner)
    async with db.tenant_transaction(owner.tenant_id) as session:
        assert [await preferences.wants(session, user, c) for c in CATEGORIES] == [True, True, False]
        changes = EmailPreferencesUpdate(weekly_digest=False, product_news=True)
        await preferences.update(session, Actor("user", str(user.id)), user, changes)
        assert [await preferences.wants(session, user, c) for c in CATEGORIES] == [False, True, True]


async def test_unsubscribe_token_names_user_tenant_and_category_for_a_year(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    owner = await sign_up(client, "token-claims")
    user = await load_user(db, owner)
    token = preferences.unsubscribe_token(settings, user, "campaign_alerts")
    claims = tokens.verify(settings.secret_key.get_secret_value(), "unsubscribe", token)
    assert (claims["sub"], claims["tid"], claims["cat"]) == (str(user.id), str(user.tenant_id), "campaign_alerts")
    lifetime = datetime.fromtimestamp(claims["exp"], UTC) - datetime.now(UTC)
    assert timedelta(days=364) < lifetime <= timedelta(days=365)
    # and it is not an access token: it cannot log anyone in
    assert (
        await client.get("/v1/me/email-preferences", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 401


async def test_unsubscribe_answers_the_category_and_is_idempotent(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    owner = await sign_up(client, "service-unsub")
    user = await load_user(db, owner)
    token = preferences.unsubscribe_token(settings, user, "weekly_digest")
    assert await preferences.unsubscribe(db, settings, token) == "weekly_digest"
    assert await preferences.unsubscribe(db, settings, token) == "weekly_digest"
    async with db.tenant_transaction(owner.tenant_id) as session:
        assert await preferences.wants(session, user, "weekly_digest") is False
        assert await preferences.wants(session, user, "campaign_alerts") is True


def test_explicit_null_and_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="true or false"):
        EmailPreferencesUpdate.model_validate({"weekly_digest": None})
    with pytest.raises(ValueError, match="Extra inputs"):
        EmailPreferencesUpdate.model_validate({"newsletter": True})
    assert EmailPreferencesUpdate.model_validate({"product_news": True}).changes() == {"product_news": True}
