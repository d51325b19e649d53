"""Helpers for dashboard tests: a signed-in page client per role, and reading values out of pages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser

from tests.conftest import PASSWORD, Team, asgi_client
from tests.web.browser import chromium

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD, tz: str = "UTC") -> httpx.Response:
    page = await http.get("/login")
    assert page.status_code == 200
    form = {"csrf_token": csrf_of(page.text), "email": email, "password": password, "next": "/", "tz": tz}
    return await http.post("/login", data=form)


@pytest.fixture
async def pages(app: FastAPI) -> AsyncIterator[Callable[[Team, str], Awaitable[httpx.AsyncClient]]]:
    """``await pages(team, role)``: an in-process client signed in to the dashboard as that role."""
    async with AsyncExitStack() as stack:

        async def make(team: Team, role: str, tz: str = "UTC") -> httpx.AsyncClient:
            http = await stack.enter_async_context(asgi_client(app))
            signed = await sign_in(http, team.emails[role], tz=tz)
            assert signed.status_code == 303, signed.text
            return http

        yield make


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium under Playwright (installed by the test setup when missing)."""
    async with chromium() as launched:
        yield launched
