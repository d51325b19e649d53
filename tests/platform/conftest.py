"""Helpers for platform admin tests: an app with the owner's pool, administrators and their tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.platform import service as platform
from tests.conftest import PASSWORD, asgi_client, bearer
from tests.flags.conftest import reset_global_flags


@pytest.fixture(autouse=True)
def seeded_flags(owner_url: str, runtime_url: str) -> Iterator[None]:
    reset_global_flags(owner_url)
    yield
    reset_global_flags(owner_url)


@pytest.fixture(scope="session")
def admin_app(settings: Settings, db: Database, owner_db: Database) -> FastAPI:
    return create_app(settings, database=db, admin_database=owner_db)


@pytest.fixture
async def http(admin_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(admin_app) as client:
        yield client


@dataclass
class Operator:
    id: uuid.UUID
    email: str
    headers: dict[str, str]


@pytest.fixture
async def operator(owner_db: Database, settings: Settings, http: httpx.AsyncClient) -> Operator:
    """A platform administrator created through the service, logged in over HTTP."""
    email = f"ops-{uuid.uuid4().hex[:8]}@castmetrics.example.com"
    async with owner_db.transaction() as session:
        admin = await platform.create_admin(session, settings, email=email, name="Pat Operator", password=PASSWORD)
    login = await http.post("/v1/admin/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Operator(id=admin.id, email=email, headers=bearer(login.json()["access_token"]))
