"""Liveness, readiness (real database), metrics, request ids and structured log lines."""

from __future__ import annotations

import io
import json
import logging

import httpx
from pydantic import SecretStr

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.observability import configure_logging
from tests.support.http import asgi_client


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_is_503_when_the_database_is_unreachable(settings: Settings) -> None:
    unreachable = Database("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", pool_size=1)
    app = create_app(settings, database=unreachable)
    async with asgi_client(app) as http:
        response = await http.get("/readyz")
    await unreachable.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "nobody" not in response.text


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/no/such/page")
    text = (await client.get("/metrics")).text
    assert 'castmetrics_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'castmetrics_http_requests_total{method="GET",route="unmatched",status="404"}' in text
    assert "castmetrics_http_request_duration_seconds_bucket" in text


async def test_metrics_token_is_enforced_when_configured(settings: Settings, db: Database) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr("s3cret-token")}), database=db)
    async with asgi_client(app) as http:
        refused = await http.get("/metrics")
        allowed = await http.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert allowed.status_code == 200


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "client-chosen-id-123"})
    assert given.headers["x-request-id"] == "client-chosen-id-123"
    hostile = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"
    assert len(hostile.headers["x-request-id"]) == 32


async def test_log_lines_are_json_with_request_and_tenant_ids(client: httpx.AsyncClient) -> None:
    configure_logging("INFO", json=True)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    await client.get("/healthz", headers={"X-Request-ID": "trace-me-0001"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    access = [line for line in lines if line["event"] == "http.request"]
    assert access, lines
    assert access[-1]["request_id"] == "trace-me-0001"
    assert "tenant_id" in access[-1]
    assert access[-1]["status"] == 200 and access[-1]["route"] == "/healthz"


async def test_root_is_the_dashboard_which_sends_visitors_to_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert (await client.get("/docs")).status_code == 200
