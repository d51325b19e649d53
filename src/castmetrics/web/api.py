"""The dashboard's way to its data: the public API, called in process with the signed-in user's token.

Every number a page shows is the number the API answers, and every permission the page respects is the
API's own check: a page that would change something posts to the same route a client would, so the
server refuses a viewer exactly as it refuses a script. No network hop is involved: the requests go
through an ASGI transport straight into this application.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
from starlette.applications import Starlette

INTERNAL_BASE = "http://dashboard.internal"
# At most this many of one page's API calls run at once: each holds a database connection.
CALLS_AT_ONCE = 4
Params = Mapping[str, str | int | float | list[str] | None]


class ApiError(Exception):
    """A non-2xx answer of the API, with its problem's title and detail."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        super().__init__(f"{status}: {self.detail}")


def _client(app: Starlette) -> httpx.AsyncClient:
    # One client per application: building one (with its TLS context) costs far more than a request.
    client = getattr(app.state, "dashboard_api", None)
    if client is None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 0))
        client = httpx.AsyncClient(transport=transport, base_url=INTERNAL_BASE, timeout=60)
        app.state.dashboard_api = client
    assert isinstance(client, httpx.AsyncClient)
    return client


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = {"title": response.reason_phrase}
        raise ApiError(response.status_code, problem if isinstance(problem, dict) else {})


class Api:
    """The API as one signed-in user sees it."""

    def __init__(self, app: Starlette, token: str) -> None:
        self._client = _client(app)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._slots = asyncio.Semaphore(CALLS_AT_ONCE)

    async def request(self, method: str, path: str, *, params: Params | None = None, json: Any = None) -> Any:
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        async with self._slots:
            response = await self._client.request(method, path, params=clean, json=json, headers=self._headers)
        _raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def download(self, path: str, **params: Any) -> httpx.Response:
        """A non-JSON answer (a PDF or CSV report) as the API sent it."""
        clean = {key: value for key, value in params.items() if value is not None}
        async with self._slots:
            response = await self._client.get(path, params=clean, headers={**self._headers, "Accept": "*/*"})
        _raise_for(response)
        return response

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> Any:
        return await self.request("POST", path, json=json if json is not None else {})

    async def patch(self, path: str, json: Any) -> Any:
        return await self.request("PATCH", path, json=json)

    async def put(self, path: str, json: Any) -> Any:
        return await self.request("PUT", path, json=json)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def all_items(self, path: str, *, limit: int = 500, max_pages: int = 20, **params: Any) -> list[Any]:
        """Every item of a list route, following ``next_cursor`` (bounded, for the dashboard's tables)."""
        items: list[Any] = []
        cursor = None
        for _ in range(max_pages):
            answer = await self.get(path, limit=limit, cursor=cursor, **params)
            items.extend(answer["items"])
            cursor = answer.get("next_cursor")
            if not cursor:
                break
        return items
