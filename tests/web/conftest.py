"""Fixtures for dashboard tests: a signed-in page client per role, and the browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser

from tests.factories.identity import Team
from tests.factories.web import sign_in
from tests.support.browser import chromium
from tests.support.http import asgi_client


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
