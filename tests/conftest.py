"""Test fixtures: a real PostgreSQL (embedded, or ``DATABASE_URL``), a fresh database built by the
real migrations, the runtime role's pool, the app, and a clean slate after every test."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator

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
from castmetrics.tenancy import service as tenancy
from castmetrics.tenancy.models import Tenant
from castmetrics.tenancy.schemas import TenantCreate
from tests.factories.identity import Team, build_team
from tests.support.citus import CitusCluster
from tests.support.http import asgi_client, free_port, wait_for

TEST_APP_ROLE = "castmetrics_test_app"
# The cluster's own tests run only on a cluster (``CASTMETRICS_TEST_CITUS=1``; README, "Running the suite on
# Citus"): everything else runs on both.
collect_ignore = [] if os.environ.get("CASTMETRICS_TEST_CITUS") == "1" else ["citus"]
# The platform tables of cross-tenant claims (emails, API-key prefixes): emptied with the rest.
PLATFORM_SCHEMA = "castmetrics_platform"
# Rows the migrations seed: kept between tests.
SEEDED_TABLES = frozenset({"alembic_version", "permissions", "feature_flags", "castmetrics_settings"})


@pytest.fixture(scope="session")
def citus_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CitusCluster | None]:
    """With ``CASTMETRICS_TEST_CITUS=1``: a coordinator and two workers of the installed Citus, for the run."""
    if os.environ.get("CASTMETRICS_TEST_CITUS") != "1":
        yield None
        return
    cluster = CitusCluster(tmp_path_factory.mktemp("citus"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory, citus_cluster: CitusCluster | None) -> Iterator[str]:
    """A superuser URL on a running server: a Citus coordinator (``CASTMETRICS_TEST_CITUS=1``),
    ``DATABASE_URL`` if set, else a fresh embedded one."""
    if citus_cluster is not None:
        yield citus_cluster.url(citus_cluster.coordinator)
        return
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
def owner_url(postgres_admin_url: str, citus_cluster: CitusCluster | None) -> Iterator[str]:
    """A database of this test run's own, dropped at the end."""
    name = f"castmetrics_test_{uuid.uuid4().hex[:10]}"
    if citus_cluster is not None:
        try:
            yield citus_cluster.create_database(name)
        finally:
            citus_cluster.drop_database(name)
        return
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
        # Off for the suite, whose tests change tenants, users and keys straight in the database and expect
        # the next request to see it; tests/identity/test_principal_cache.py runs with it on.
        principal_cache_seconds=0,
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
        # The platform tables first: the order the application locks them in (a claim, then the user), so a
        # server still finishing a request cannot deadlock with the TRUNCATE.
        tables = [sql.Identifier(PLATFORM_SCHEMA, t) for t in ("user_emails", "api_key_prefixes")] + [
            sql.Identifier(t) for t in tables
        ]
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(tables)))


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


@pytest.fixture
async def make_team(db: Database, settings: Settings, client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """A tenant (tier chosen) with one verified, logged-in user per default role."""

    async def make(tier: str = "pro") -> Team:
        return await build_team(db, settings, client, tier)

    return make
