"""Sign-up, login, refresh rotation, logout, throttling, and the shapes API.md fixes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select

from castmetrics.auth.usage import UsageMeter
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.errors import RateLimited, Unauthorized
from castmetrics.identity import service as identity
from castmetrics.identity import throttle
from castmetrics.mail.models import Email
from tests.factories.identity import PASSWORD, bearer, signup


async def test_signup_answers_the_contract_shape(client: httpx.AsyncClient, db: Database) -> None:
    body = await signup(client, slug="shape-net", email="Shape.Owner@Example.com")
    assert set(body) >= {"tenant", "user", "access_token", "refresh_token", "token_type"}
    assert body["token_type"] == "bearer"
    assert {k: body["tenant"][k] for k in ("slug", "name", "subscription_tier")} == {
        "slug": "shape-net", "name": "Signed Up Network", "subscription_tier": "free",
    }  # fmt: skip
    assert body["user"]["email"] == "Shape.Owner@example.com"
    assert body["user"]["email_verified"] is False and body["user"]["roles"] == ["owner"]
    me = (await client.get("/v1/me", headers=bearer(body["access_token"]))).json()
    assert me["user"] == {
        "id": body["user"]["id"], "email": "Shape.Owner@example.com", "name": "Sam Owner", "email_verified": False,
    }  # fmt: skip
    assert me["tenant"]["id"] == body["tenant"]["id"] and me["roles"] == ["owner"]
    assert "billing:update" in me["permissions"] and me["api_key"] is None
    # without SMTP the verification email is kept in the outbox table and the log
    async with db.tenant_transaction(body["tenant"]["id"]) as session:
        email = (await session.scalars(select(Email))).one()
    assert (email.kind, email.status, email.to_address) == ("verify_email", "logged", "Shape.Owner@example.com")
    assert "/verify-email?token=" in email.body


async def test_signup_conflicts_keep_the_first(client: httpx.AsyncClient) -> None:
    first = await signup(client, slug="taken-net", email="first@example.com")
    same_slug = await client.post(
        "/v1/auth/signup",
        json={"tenant_name": "X", "tenant_slug": "taken-net", "email": "other@example.com", "password": PASSWORD,
              "name": "Other"},
    )  # fmt: skip
    same_email = await client.post(
        "/v1/auth/signup",
        json={"tenant_name": "X", "tenant_slug": "fresh-net", "email": "FIRST@EXAMPLE.COM", "password": PASSWORD,
              "name": "Other"},
    )  # fmt: skip
    assert same_slug.status_code == 409 and same_slug.json()["field"] == "slug"
    assert same_email.status_code == 409 and same_email.json()["field"] == "email"
    assert same_email.headers["content-type"] == "application/problem+json"
    login = await client.post("/v1/auth/login", json={"email": "first@example.com", "password": PASSWORD})
    assert login.status_code == 200
    me = (await client.get("/v1/me", headers=bearer(login.json()["access_token"]))).json()
    assert me["tenant"]["id"] == first["tenant"]["id"]
    # the refused sign-up left no tenant behind: its slug is free
    assert (await signup(client, slug="fresh-net"))["tenant"]["slug"] == "fresh-net"


async def test_password_policy(client: httpx.AsyncClient) -> None:
    cases = {
        "short": "too short",
        "password1234": "too easy to guess",
        "ann.lee@example.com": "email address or name",
    }
    for password, reason in cases.items():
        response = await client.post(
            "/v1/auth/signup",
            json={"tenant_name": "P", "tenant_slug": "pw-net", "email": "ann.lee@example.com", "password": password,
                  "name": "Ann Lee"},
        )  # fmt: skip
        assert response.status_code == 422, password
        assert response.json()["field"] == "password"
        assert reason.split()[0] in response.json()["detail"] or "characters long" in response.json()["detail"]


async def test_login_shape_and_wrong_password(client: httpx.AsyncClient) -> None:
    await signup(client, email="login.me@example.com")
    ok = await client.post("/v1/auth/login", json={"email": "LOGIN.ME@example.com", "password": PASSWORD})
    assert ok.status_code == 200
    assert set(ok.json()) >= {"access_token", "refresh_token", "token_type"}
    wrong = await client.post("/v1/auth/login", json={"email": "login.me@example.com", "password": "nope" * 3})
    nobody = await client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    for response in (wrong, nobody):
        assert response.status_code == 401
        assert response.json()["detail"] == "the email or password is wrong"


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    first = await signup(client)
    rotated = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/v1/me", headers=bearer(second["access_token"]))).status_code == 200
    # the old token again: a thief or a confused client — the whole family is revoked
    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401 and "already used" in reuse.json()["detail"]
    after = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401


async def test_logout_revokes_the_refresh_token(client: httpx.AsyncClient) -> None:
    session = await signup(client)
    assert (await client.post("/v1/auth/logout", json={"refresh_token": session["refresh_token"]})).status_code == 204
    refused = await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refused.status_code == 401
    assert (await client.post("/v1/auth/logout", json={"refresh_token": "garbage"})).status_code == 204


async def test_bad_tokens_are_401_problems(client: httpx.AsyncClient) -> None:
    for headers in ({}, bearer("not-a-jwt"), bearer("cm_abcdefgh_forged"), {"Authorization": "Basic eDp5"}):
        response = await client.get("/v1/me", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/problem+json"


async def test_repeated_failures_are_slowed_then_refused(client: httpx.AsyncClient) -> None:
    await signup(client, email="throttled@example.com")
    statuses = []
    for _ in range(11):
        response = await client.post("/v1/auth/login", json={"email": "throttled@example.com", "password": "x" * 12})
        statuses.append(response.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    assert int(response.headers["retry-after"]) > 0
    # even the right password is refused until the window ends
    blocked = await client.post("/v1/auth/login", json={"email": "throttled@example.com", "password": PASSWORD})
    assert blocked.status_code == 429


async def test_parallel_guesses_check_no_more_passwords_than_the_limit(client: httpx.AsyncClient) -> None:
    # given an account, and a guesser sending 60 guesses at once from one address
    await signup(client, email="raced@example.com")
    guesses = [
        client.post("/v1/auth/login", json={"email": "raced@example.com", "password": f"guess-{n:04d}-x"})
        for n in range(60)
    ]
    statuses = [response.status_code for response in await asyncio.gather(*guesses)]
    # then only as many passwords as the limit allows were checked; the rest were refused unread
    assert statuses.count(401) == throttle.BLOCK_AFTER, statuses
    assert statuses.count(429) == 60 - throttle.BLOCK_AFTER


async def test_a_guesser_locks_out_only_their_own_address(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    # given a guesser who exhausted the limit for an account from their address
    await signup(client, email="target@example.com")
    await signup(client, email="neighbour@example.com")
    for _ in range(throttle.BLOCK_AFTER):
        with pytest.raises(Unauthorized):
            await identity.login(
                db, settings, "target@example.com", "wrong-password-1", "203.0.113.66", meter=UsageMeter()
            )
    with pytest.raises(RateLimited):
        await identity.login(db, settings, "target@example.com", PASSWORD, "203.0.113.66", meter=UsageMeter())
    # then the account's owner, from another address, still logs in
    assert (
        await identity.login(db, settings, "target@example.com", PASSWORD, "198.51.100.7", meter=UsageMeter())
    ).access_token
    # and another account behind the guesser's address is not refused
    assert (
        await identity.login(db, settings, "neighbour@example.com", PASSWORD, "203.0.113.66", meter=UsageMeter())
    ).access_token
