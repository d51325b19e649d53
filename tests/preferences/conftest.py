"""Accounts for the preference tests, made through the real sign-up route and identity service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from castmetrics.auth.principal import Actor
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.identity import service as identity
from castmetrics.identity.models import User

PASSWORD = "correct horse battery staple 42"


@dataclass(frozen=True)
class Account:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    headers: dict[str, str]


async def sign_up(client: httpx.AsyncClient, slug: str) -> Account:
    """A new tenant and its owner, logged in."""
    response = await client.post(
        "/v1/auth/signup",
        json={
            "tenant_name": f"{slug.title()} Network", "tenant_slug": slug, "email": f"owner@{slug}.example.com",
            "password": PASSWORD, "name": f"{slug.title()} Owner",
        },
    )  # fmt: skip
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        tenant_id=uuid.UUID(body["tenant"]["id"]),
        user_id=uuid.UUID(body["user"]["id"]),
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )


async def colleague(client: httpx.AsyncClient, db: Database, settings: Settings, of: Account, email: str) -> Account:
    """A second user in ``of``'s tenant (made through the identity service), logged in."""
    async with db.tenant_transaction(of.tenant_id) as session:
        user = await identity.create_user(
            session, settings, of.tenant_id, email=email, name="Second Colleague", password=PASSWORD,
            role_names=["viewer"], actor=Actor.system("tests"),
        )  # fmt: skip
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Account(of.tenant_id, user.id, {"Authorization": f"Bearer {login.json()['access_token']}"})


async def load_user(db: Database, account: Account) -> User:
    async with db.tenant_transaction(account.tenant_id) as session:
        return await identity.get_user(session, account.user_id)
