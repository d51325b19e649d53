"""Test fixtures: a real PostgreSQL (embedded, or ``DATABASE_URL``), a fresh database built by the
real migrations, the runtime role's pool, the app, and a clean slate after every test."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg import sql

from castmetrics.app import create_app
from castmetrics.auth.principal import Actor
from castmetrics.config import Settings
from castmetrics.db import migrate, urls
from castmetrics.db.embedded import EmbeddedPostgres
from castmetrics.db.session import Database
from castmetrics.identity import service as identity
from castmetrics.identity.permissions import DEFAULT_ROLES
from castmetrics.tenancy import service as tenancy
from castmetrics.tenancy.models import Tenant
from castmetrics.tenancy.schemas import TenantCreate

TEST_APP_ROLE = "castmetrics_test_app"
# Rows the migrations seed: kept between tests.
SEEDED_TABLES = frozenset({"alembic_version", "permissions", "feature_flags", "castmetrics_settings"})
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL on a running server: ``DATABASE_URL`` if set, else a fresh embedded one."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded"), database="postgres")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def owner_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of this test run's own, dropped at the end."""
    name = f"castmetrics_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(urls.libpq_url(postgres_admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urls.with_database(postgres_admin_url, name)
    finally:
        with psycopg.connect(urls.libpq_url(postgres_admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def settings(owner_url: str) -> Settings:
    return Settings(
        database_url=owner_url,
        app_role=TEST_APP_ROLE,
        secret_key="test-secret-key-of-sufficient-length",
        in_process_worker=False,
        max_body_bytes=64 * 1024,
        log_json=True,
        bcrypt_rounds=4,
    )


@pytest.fixture(scope="session")
def runtime_url(settings: Settings, owner_url: str) -> str:
    """Builds the schema with the real migrations and answers the runtime role's URL."""
    return migrate.migrate(settings, owner_url)


@pytest.fixture(scope="session")
async def db(runtime_url: str) -> AsyncIterator[Database]:
    database = Database(runtime_url, pool_size=5, application_name="castmetrics-tests")
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def owner_db(owner_url: str, runtime_url: str) -> AsyncIterator[Database]:
    database = Database(owner_url, pool_size=2, application_name="castmetrics-tests-owner")
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def app(settings: Settings, db: Database, owner_db: Database):  # type: ignore[no-untyped-def]
    return create_app(settings, database=db, admin_database=owner_db)


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in-process; crashes come back as 500 responses."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as http:
        yield http


@pytest.fixture(autouse=True)
def clean_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts from empty tables (the schema stays)."""
    yield
    if "owner_url" not in request.fixturenames:
        return
    owner = request.getfixturevalue("owner_url")
    with psycopg.connect(urls.libpq_url(owner), autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND NOT (tablename = ANY(%s))",
                (list(SEEDED_TABLES),),
            )
        ]
        if tables:
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(sql.Identifier(t) for t in tables)))


@pytest.fixture
async def make_tenant(owner_db: Database):  # type: ignore[no-untyped-def]
    """Create a tenant through the service, as the CLI does (owner path)."""

    async def make(slug: str | None = None, **fields: object) -> Tenant:
        data = TenantCreate(
            name=str(fields.pop("name", "Test Network")), slug=slug or f"t-{uuid.uuid4().hex[:12]}", **fields
        )
        async with owner_db.transaction() as session:
            return await tenancy.create(session, data, Actor.system("tests"))

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 30.0) -> float:
    """Poll ``url`` until it answers 200; answers the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


@pytest.fixture(scope="session")
def live_server(settings: Settings, runtime_url: str) -> Iterator[str]:
    """The app served by uvicorn on a real local port, in a thread with its own event loop and pool."""
    live_settings = settings.model_copy(update={"app_database_url": runtime_url})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(live_settings), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/healthz")
    yield base
    server.should_exit = True
    thread.join(timeout=10)


# --- identity helpers shared by every domain's tests ----------------------------------------------

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


async def drop_partitions_keeping(db: Database, owner_url: str, days: int, *, restore: int = 730) -> list[str]:
    """Drop event partitions older than ``days`` days, as an operator with that retention would (the
    database refuses to drop more than the recorded retention); the recorded value is restored."""
    from castmetrics.db.migrate import set_event_retention
    from castmetrics.events import partitions

    set_event_retention(owner_url, days)
    try:
        return await partitions.drop_expired(db, datetime.now(UTC).date(), retention_days=days)
    finally:
        set_event_retention(owner_url, restore)
