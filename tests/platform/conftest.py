"""Fixtures for platform admin tests: an app with the owner's pool, administrators and their tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.factories.flags import reset_global_flags
from tests.factories.platform import Operator, make_operator
from tests.support.http import asgi_client


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


@pytest.fixture
async def operator(owner_db: Database, settings: Settings, http: httpx.AsyncClient) -> Operator:
    """A platform administrator created through the service, logged in over HTTP."""
    return await make_operator(owner_db, settings, http)
