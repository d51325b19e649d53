"""Email preference routes: the current user's preferences, and the signed unsubscribe link."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
from sqlalchemy import select, text

from castmetrics.audit.models import AuditEntry
from castmetrics.auth import tokens
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.preferences import service as preferences
from castmetrics.preferences.schemas import Category
from tests.factories.identity import Account, colleague, load_user, sign_up

ROUTE = "/v1/me/email-preferences"
DEFAULTS = {"weekly_digest": True, "campaign_alerts": True, "product_news": False}


def _categories(body: dict[str, object]) -> dict[str, object]:
    return {k: body[k] for k in DEFAULTS}


async def _preferences_of(client: httpx.AsyncClient, account: Account) -> dict[str, object]:
    response = await client.get(ROUTE, headers=account.headers)
    assert response.status_code == 200, response.text
    return _categories(response.json())


async def _link_path(db: Database, settings: Settings, account: Account, category: Category) -> str:
    """The path and query of the unsubscribe link an email to ``account`` would carry."""
    link = preferences.unsubscribe_link(settings, await load_user(db, account), category)
    assert link.startswith(f"{settings.public_url}/v1/email-preferences/unsubscribe?token=")
    return link.removeprefix(settings.public_url)


def _with_claims(token: str, **changes: str) -> str:
    """``token`` with its payload rewritten but the original signature kept (a forgery)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_a_new_user_has_the_defaults(client: httpx.AsyncClient) -> None:
    # given a user who never touched their preferences
    owner = await sign_up(client, "defaults")
    # when they read them
    response = await client.get(ROUTE, headers=owner.headers)
    # then they get the defaults, never saved
    assert response.status_code == 200
    assert response.json() == {**DEFAULTS, "updated_at": None}


async def test_patch_changes_only_the_fields_sent_and_persists(client: httpx.AsyncClient, db: Database) -> None:
    owner = await sign_up(client, "patcher")
    # when two categories change
    changed = await client.patch(ROUTE, headers=owner.headers, json={"weekly_digest": False, "product_news": True})
    # then the answer and every later read show them, the third untouched
    assert changed.status_code == 200, changed.text
    assert _categories(changed.json()) == {"weekly_digest": False, "campaign_alerts": True, "product_news": True}
    assert changed.json()["updated_at"] is not None
    assert await _preferences_of(client, owner) == _categories(changed.json())
    # and a second partial change keeps the first one's other fields
    again = await client.patch(ROUTE, headers=owner.headers, json={"weekly_digest": True})
    assert _categories(again.json()) == {"weekly_digest": True, "campaign_alerts": True, "product_news": True}
    assert await _preferences_of(client, owner) == _categories(again.json())
    # and each change is audited as the user, with what changed
    async with db.tenant_transaction(owner.tenant_id) as session:
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "email_preferences")
                .order_by(AuditEntry.occurred_at, AuditEntry.id)
            )
        ).all()
        rows = (await session.execute(text("SELECT count(*) FROM email_preferences"))).scalar_one()
    assert [(e.actor_type, e.actor_id, e.entity_id) for e in entries] == [
        ("user", str(owner.user_id), str(owner.user_id))
    ] * 2
    assert entries[0].changes == {
        "product_news": {"before": False, "after": True},
        "weekly_digest": {"before": True, "after": False},
    }
    assert entries[1].changes == {"weekly_digest": {"before": False, "after": True}}
    assert rows == 1  # one row per user, however often it changes


async def test_a_patch_without_changes_writes_nothing(client: httpx.AsyncClient, db: Database) -> None:
    owner = await sign_up(client, "empty-patch")
    for body in ({}, {"product_news": False, "weekly_digest": True}):  # nothing, or only the current values
        response = await client.patch(ROUTE, headers=owner.headers, json=body)
        assert response.status_code == 200
        assert response.json() == {**DEFAULTS, "updated_at": None}
    async with db.tenant_transaction(owner.tenant_id) as session:
        rows = (await session.execute(text("SELECT count(*) FROM email_preferences"))).scalar_one()
    assert rows == 0


async def test_unknown_fields_and_nulls_are_422_problems(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "strict-body")
    unknown = await client.patch(ROUTE, headers=owner.headers, json={"weekly_digest": False, "marketing": False})
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["title"] == "Validation failed"
    assert [e["loc"] for e in unknown.json()["errors"]] == [["body", "marketing"]]
    null = await client.patch(ROUTE, headers=owner.headers, json={"product_news": None})
    assert null.status_code == 422
    assert null.json()["errors"][0]["loc"] == ["body", "product_news"]
    not_bool = await client.patch(ROUTE, headers=owner.headers, json={"product_news": "sometimes"})
    assert not_bool.status_code == 422
    # and nothing was applied, not even the valid field of the first request
    assert await _preferences_of(client, owner) == DEFAULTS


async def test_reading_or_changing_needs_credentials(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get(ROUTE),
        await client.patch(ROUTE, json={"weekly_digest": False}),
        await client.get(ROUTE, headers={"Authorization": "Bearer not-a-token"}),
    ):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401


async def test_the_unsubscribe_link_works_without_login_and_turns_off_only_its_category(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    # given a user who also opted in to product news
    owner = await sign_up(client, "unsubscriber")
    await client.patch(ROUTE, headers=owner.headers, json={"product_news": True})
    path = await _link_path(db, settings, owner, "campaign_alerts")
    # when the link from a campaign alert is opened, with no credentials
    response = await client.get(path)
    # then that category is off and nothing else changed
    assert response.status_code == 200, response.text
    assert response.json() == {"category": "campaign_alerts", "unsubscribed": True}
    assert await _preferences_of(client, owner) == {
        "weekly_digest": True,
        "campaign_alerts": False,
        "product_news": True,
    }
    # and opening it again is harmless
    assert (await client.get(path)).json() == {"category": "campaign_alerts", "unsubscribed": True}
    assert (await _preferences_of(client, owner))["campaign_alerts"] is False
    # and the change is audited as the user the link was sent to
    async with db.tenant_transaction(owner.tenant_id) as session:
        entry = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "email_preferences")
                .order_by(AuditEntry.occurred_at.desc(), AuditEntry.id.desc())
                .limit(1)
            )
        ).one()
    assert (entry.actor_type, entry.actor_id) == ("user", str(owner.user_id))
    assert entry.changes == {"campaign_alerts": {"before": True, "after": False}}


async def test_one_click_unsubscribe_by_post(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    owner = await sign_up(client, "one-click")
    path = await _link_path(db, settings, owner, "weekly_digest")
    # when a mail client sends the RFC 8058 one-click request
    response = await client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200, response.text
    assert response.json() == {"category": "weekly_digest", "unsubscribed": True}
    assert await _preferences_of(client, owner) == {**DEFAULTS, "weekly_digest": False}


async def test_bad_tokens_are_401_and_change_nothing(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    owner = await sign_up(client, "tamper")
    user = await load_user(db, owner)
    secret = settings.secret_key.get_secret_value()
    good = preferences.unsubscribe_token(settings, user, "weekly_digest")
    header, payload, signature = good.split(".")
    bad_tokens = {
        "signature altered": f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}",
        "category rewritten": _with_claims(good, cat="campaign_alerts"),
        "expired": tokens.sign(
            secret,
            "unsubscribe",
            {"sub": str(user.id), "tid": str(user.tenant_id), "cat": "weekly_digest"},
            timedelta(seconds=-1),
        ),  # fmt: skip
        "another purpose": tokens.sign(
            secret,
            "verify",
            {"sub": str(user.id), "tid": str(user.tenant_id), "cat": "weekly_digest"},
            timedelta(days=1),
        ),  # fmt: skip
        "another secret": tokens.sign(
            "some-other-secret-of-sufficient-length",
            "unsubscribe",
            {"sub": str(user.id), "tid": str(user.tenant_id), "cat": "weekly_digest"},
            timedelta(days=1),
        ),  # fmt: skip
        "unknown category": tokens.sign(
            secret,
            "unsubscribe",
            {"sub": str(user.id), "tid": str(user.tenant_id), "cat": "everything"},
            timedelta(days=1),
        ),  # fmt: skip
        "not a uuid": tokens.sign(
            secret,
            "unsubscribe",
            {"sub": "me", "tid": str(user.tenant_id), "cat": "weekly_digest"},
            timedelta(days=1),
        ),  # fmt: skip
        "garbage": "not-a-token",
    }
    for name, token in bad_tokens.items():
        for method in ("GET", "POST"):
            response = await client.request(method, "/v1/email-preferences/unsubscribe", params={"token": token})
            assert response.status_code == 401, (name, method, response.text)
            assert response.headers["content-type"] == "application/problem+json", name
    expired = await client.get("/v1/email-preferences/unsubscribe", params={"token": bad_tokens["expired"]})
    assert "expired" in expired.json()["detail"]
    missing = await client.get("/v1/email-preferences/unsubscribe")
    assert missing.status_code == 422
    assert await _preferences_of(client, owner) == DEFAULTS


async def test_a_token_for_one_user_cannot_change_another(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    # given two users of one tenant
    alice = await sign_up(client, "shared-team")
    bob = await colleague(client, db, settings, alice, "bob@shared-team.example.com")
    alice_token = preferences.unsubscribe_token(settings, await load_user(db, alice), "product_news")
    await client.patch(ROUTE, headers=alice.headers, json={"product_news": True})
    await client.patch(ROUTE, headers=bob.headers, json={"product_news": True})
    # when Alice's link is rewritten to name Bob
    forged = await client.get(
        "/v1/email-preferences/unsubscribe", params={"token": _with_claims(alice_token, sub=str(bob.user_id))}
    )
    # then it is refused, and Alice's genuine link changes Alice only
    assert forged.status_code == 401
    assert (await client.get("/v1/email-preferences/unsubscribe", params={"token": alice_token})).status_code == 200
    assert (await _preferences_of(client, alice))["product_news"] is False
    assert (await _preferences_of(client, bob))["product_news"] is True


async def test_another_tenant_cannot_see_or_reach_the_preferences(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    # given a user of tenant A who changed their preferences
    alice = await sign_up(client, "tenant-alpha")
    carol = await sign_up(client, "tenant-gamma")
    await client.patch(ROUTE, headers=alice.headers, json={"weekly_digest": False, "product_news": True})
    # then a user of tenant B reads only their own (default) preferences
    assert await _preferences_of(client, carol) == DEFAULTS
    # and tenant B's transactions see none of tenant A's rows (RLS), A's see exactly its one
    for account, expected in ((carol, 0), (alice, 1)):
        async with db.tenant_transaction(account.tenant_id) as session:
            rows = (await session.execute(text("SELECT count(*) FROM email_preferences"))).scalar_one()
        assert rows == expected
    # and a validly signed token naming Alice but tenant B finds no such user there (the token's
    # tenant decides which rows the transaction can reach)
    crossed = tokens.sign(
        settings.secret_key.get_secret_value(), "unsubscribe",
        {"sub": str(alice.user_id), "tid": str(carol.tenant_id), "cat": "weekly_digest"}, timedelta(days=1),
    )  # fmt: skip
    response = await client.get("/v1/email-preferences/unsubscribe", params={"token": crossed})
    assert response.status_code == 404
    assert await _preferences_of(client, alice) == {
        "weekly_digest": False,
        "campaign_alerts": True,
        "product_news": True,
    }
    assert await _preferences_of(client, carol) == DEFAULTS
