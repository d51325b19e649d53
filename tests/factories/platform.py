"""Platform test data: an administrator of the whole platform, created through the service and logged in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.platform import service as platform
from tests.factories.identity import PASSWORD, bearer


@dataclass
class Operator:
    """A logged-in platform administrator: id, e-mail and the headers carrying the access token."""

    id: uuid.UUID
    email: str
    headers: dict[str, str]


async def make_operator(owner_db: Database, settings: Settings, http: httpx.AsyncClient) -> Operator:
    """A platform administrator created through the service, logged in over HTTP."""
    email = f"ops-{uuid.uuid4().hex[:8]}@castmetrics.example.com"
    async with owner_db.transaction() as session:
        admin = await platform.create_admin(session, settings, email=email, name="Pat Operator", password=PASSWORD)
    login = await http.post("/v1/admin/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Operator(id=admin.id, email=email, headers=bearer(login.json()["access_token"]))
