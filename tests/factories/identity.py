"""Identity test data: teams with a logged-in user per default role, sign-ups, and single accounts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from castmetrics.auth.principal import Actor
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.identity import service as identity
from castmetrics.identity.models import User
from castmetrics.identity.permissions import DEFAULT_ROLES
from castmetrics.tenancy.schemas import TenantCreate

PASSWORD = "correct horse battery staple 42"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Team:
    """A tenant with one verified user per default role: ids, e-mails and access tokens by role."""

    tenant_id: uuid.UUID
    slug: str
    user_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        return bearer(self.tokens[role])


async def build_team(db: Database, settings: Settings, client: httpx.AsyncClient, tier: str = "pro") -> Team:
    """A tenant (tier chosen) provisioned through the identity service, its users logged in over HTTP."""
    tenant_id = uuid.uuid4()
    slug = f"team-{uuid.uuid4().hex[:10]}"
    team = Team(tenant_id=tenant_id, slug=slug)
    async with db.tenant_transaction(tenant_id) as session:
        await identity.provision_tenant(
            session, TenantCreate(name="Team", slug=slug, subscription_tier=tier), Actor.system("tests"),
            tenant_id=tenant_id,
        )  # fmt: skip
        for role in DEFAULT_ROLES:
            email = f"{role}.{slug}@example.com"
            user = await identity.create_user(
                session, settings, tenant_id, email=email, name=f"{role.title()} Person", password=PASSWORD,
                role_names=[role], actor=Actor.system("tests"), email_verified=True,
            )  # fmt: skip
            team.user_ids[role], team.emails[role] = user.id, email
    for role, email in team.emails.items():
        login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        team.tokens[role] = login.json()["access_token"]
    return team


async def signup(client: httpx.AsyncClient, slug: str | None = None, email: str | None = None) -> dict[str, Any]:
    """A tenant and its owner through the public sign-up route; answers the route's JSON."""
    slug = slug or f"net-{uuid.uuid4().hex[:10]}"
    response = await client.post(
        "/v1/auth/signup",
        json={"tenant_name": "Signed Up Network", "tenant_slug": slug, "email": email or f"{slug}@example.com",
              "password": PASSWORD, "name": "Sam Owner"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass(frozen=True)
class Account:
    """One logged-in user: their tenant, their id and the headers that carry their access token."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    headers: dict[str, str]


async def sign_up(client: httpx.AsyncClient, slug: str) -> Account:
    """A new tenant and its owner (through the sign-up route), logged in, as an :class:`Account`."""
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
