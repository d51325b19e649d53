"""Every error is an RFC 9457 problem: routing errors, validation, domain errors, crashes, big bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.errors import Conflict, QuotaExceeded, RateLimited
from tests.support.http import asgi_client


class Widget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    size: int = Field(ge=0)


def _probe_router() -> APIRouter:
    router = APIRouter()

    @router.post("/probe/widgets", status_code=201)
    async def create_widget(widget: Widget) -> Widget:
        return widget

    @router.get("/probe/conflict")
    async def conflict() -> None:
        raise Conflict("the slug 'x' is already in use", field="slug")

    @router.get("/probe/quota")
    async def quota() -> None:
        raise QuotaExceeded("podcasts", 3, 3)

    @router.get("/probe/rate")
    async def rate() -> None:
        raise RateLimited("slow down", retry_after=7)

    @router.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError("SELECT secret FROM internals -- must never reach the client")

    return router


@pytest.fixture(scope="module")
def probe_app(settings: Settings, db: Database) -> FastAPI:
    app = create_app(settings, database=db)
    app.include_router(_probe_router())
    return app


@pytest.fixture
async def probe(probe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(probe_app) as client:
        yield client


def _assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    return body  # type: ignore[no-any-return]


async def test_unknown_route_is_a_404_problem(probe: httpx.AsyncClient) -> None:
    _assert_problem(await probe.get("/v1/nothing-here"), 404)


async def test_wrong_method_is_a_405_problem_with_allow(probe: httpx.AsyncClient) -> None:
    response = await probe.delete("/healthz")
    _assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


async def test_validation_errors_list_each_field(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/probe/widgets", json={"name": "", "size": -1, "colour": "red"})
    body = _assert_problem(response, 422)
    locations = {tuple(error["loc"]) for error in body["errors"]}  # type: ignore[union-attr]
    assert locations == {("body", "name"), ("body", "size"), ("body", "colour")}


async def test_malformed_json_is_a_422_problem(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/probe/widgets", content=b"{not json", headers={"content-type": "application/json"})
    _assert_problem(response, 422)


async def test_valid_body_is_accepted(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/probe/widgets", json={"name": "ok", "size": 2})
    assert response.status_code == 201
    assert response.json() == {"name": "ok", "size": 2}


async def test_domain_errors_map_to_their_status(probe: httpx.AsyncClient) -> None:
    conflict = _assert_problem(await probe.get("/probe/conflict"), 409)
    assert conflict["field"] == "slug"
    quota = _assert_problem(await probe.get("/probe/quota"), 402)
    assert (quota["quota"], quota["limit"], quota["usage"]) == ("podcasts", 3, 3)
    rate = await probe.get("/probe/rate")
    _assert_problem(rate, 429)
    assert rate.headers["retry-after"] == "7"


async def test_crash_is_a_500_problem_without_internals(probe: httpx.AsyncClient) -> None:
    response = await probe.get("/probe/crash")
    body = _assert_problem(response, 500)
    assert "SELECT" not in response.text and "Traceback" not in response.text
    assert "x-request-id" in response.headers
    assert "X-Request-ID" in str(body["detail"])


async def test_body_over_limit_by_content_length_is_413(probe: httpx.AsyncClient, settings: Settings) -> None:
    payload = b'{"name": "' + b"x" * settings.max_body_bytes + b'", "size": 1}'
    response = await probe.post("/probe/widgets", content=payload, headers={"content-type": "application/json"})
    body = _assert_problem(response, 413)
    assert body["limit"] == settings.max_body_bytes


async def test_streamed_body_over_limit_is_413(probe: httpx.AsyncClient, settings: Settings) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(settings.max_body_bytes // 1024 + 2):
            yield b"x" * 1024
        yield b'", "size": 1}'

    response = await probe.post("/probe/widgets", content=chunks(), headers={"content-type": "application/json"})
    _assert_problem(response, 413)


async def test_body_under_limit_passes(probe: httpx.AsyncClient, settings: Settings) -> None:
    name = "x" * (settings.max_body_bytes - 100)
    response = await probe.post("/probe/widgets", json={"name": name, "size": 1})
    assert response.status_code == 201


async def test_nul_characters_are_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/signup",
        json={
            "tenant_name": "Nul\u0000Net", "tenant_slug": "nul-net", "email": "nul@example.com",
            "password": "correct horse battery staple 42", "name": "Nul",
        },
    )  # fmt: skip
    body = _assert_problem(response, 422)
    assert "SQL" not in response.text and "psycopg" not in response.text
    assert "NUL" in str(body["detail"])
