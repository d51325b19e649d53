"""Ending a login session ends its access tokens at once; single-use tokens stay single-use under concurrency."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.errors import Unauthorized
from castmetrics.identity import service as identity
from tests.factories.identity import PASSWORD, bearer, signup

NEW_PASSWORD = "a-brand-new-passphrase-77"


async def _login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _me(client: httpx.AsyncClient, access_token: str) -> int:
    return (await client.get("/v1/me", headers=bearer(access_token))).status_code


async def _reset_token(owner_db: Database, email: str) -> str:
    async with owner_db.transaction() as session:
        body = (
            await session.execute(
                text("SELECT body FROM emails WHERE kind = 'password_reset' AND to_address = :to "
                     "ORDER BY created_at DESC LIMIT 1"),
                {"to": email},
            )
        ).scalar_one()  # fmt: skip
    link = re.search(r"https?://\S+", body)
    assert link, body
    return parse_qs(urlsplit(link.group(0)).query)["token"][0]


async def test_logout_ends_the_sessions_access_token_at_once(client: httpx.AsyncClient) -> None:
    # given a signed-in user with a second, independent session
    await signup(client, email="leaving@example.com")
    session = await _login(client, "leaving@example.com")
    other = await _login(client, "leaving@example.com")
    assert await _me(client, session["access_token"]) == 200
    # when they log out of the first
    assert (await client.post("/v1/auth/logout", json={"refresh_token": session["refresh_token"]})).status_code == 204
    # then its access token stops working at once (not when it expires), and the other session goes on
    assert await _me(client, session["access_token"]) == 401
    assert await _me(client, other["access_token"]) == 200


async def test_a_replayed_refresh_token_ends_the_stolen_sessions_access_tokens(client: httpx.AsyncClient) -> None:
    await signup(client, email="stolen@example.com")
    session = await _login(client, "stolen@example.com")
    rotated = (await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})).json()
    assert await _me(client, rotated["access_token"]) == 200
    # the thief replays the old refresh token: the whole family is revoked, access tokens included
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert replay.status_code == 401
    assert await _me(client, rotated["access_token"]) == 401


async def test_a_password_reset_ends_every_session(client: httpx.AsyncClient, owner_db: Database) -> None:
    await signup(client, email="reset-all@example.com")
    session = await _login(client, "reset-all@example.com")
    assert (await client.post("/v1/auth/password-reset", json={"email": "reset-all@example.com"})).status_code == 202
    token = await _reset_token(owner_db, "reset-all@example.com")
    confirmed = await client.post("/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})
    assert confirmed.status_code == 204, confirmed.text
    assert await _me(client, session["access_token"]) == 401


async def test_a_reset_token_used_twice_at_once_works_once(
    client: httpx.AsyncClient, owner_db: Database, db: Database, settings: Settings
) -> None:
    # given a reset link, presented twice at the same moment (two tabs, or an attacker racing the owner)
    await signup(client, email="raced-reset@example.com")
    assert (await client.post("/v1/auth/password-reset", json={"email": "raced-reset@example.com"})).status_code == 202
    token = await _reset_token(owner_db, "raced-reset@example.com")
    outcomes = await asyncio.gather(
        identity.reset_password(db, settings, token, NEW_PASSWORD),
        identity.reset_password(db, settings, token, NEW_PASSWORD + "-other"),
        return_exceptions=True,
    )
    # then exactly one of them set a password; the other was refused as used
    assert sum(outcome is None for outcome in outcomes) == 1, outcomes
    assert sum(isinstance(outcome, Unauthorized) for outcome in outcomes) == 1, outcomes
