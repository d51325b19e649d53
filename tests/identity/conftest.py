"""Helpers for identity tests: tenants with a user per role, signed-up owners, auth headers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from castmetrics.audit.service import Actor
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.identity import service as identity
from castmetrics.identity.permissions import DEFAULT_ROLES
from castmetrics.tenancy.schemas import TenantCreate

PASSWORD = "correct horse battery staple 42"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Team:
    tenant_id: uuid.UUID
    slug: str
    user_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        return bearer(self.tokens[role])


async def signup(client: httpx.AsyncClient, slug: str | None = None, email: str | None = None) -> dict:  # type: ignore[type-arg]
    slug = slug or f"net-{uuid.uuid4().hex[:10]}"
    response = await client.post(
        "/v1/auth/signup",
        json={"tenant_name": "Signed Up Network", "tenant_slug": slug, "email": email or f"{slug}@example.com",
              "password": PASSWORD, "name": "Sam Owner"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def make_team(db: Database, settings: Settings, client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """A tenant (tier chosen) with one verified, logged-in user per default role."""

    async def make(tier: str = "pro") -> Team:
        tenant_id = uuid.uuid4()
        slug = f"team-{uuid.uuid4().hex[:10]}"
        team = Team(tenant_id=tenant_id, slug=slug)
        async with db.tenant_transaction(tenant_id) as session:
            await identity.provision_tenant(
                session, TenantCreate(name="Team", slug=slug, subscription_tier=tier), Actor.system("tests"),  # type: ignore[arg-type]
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

    return make
