"""Event fixtures: a team with a podcast, episodes and a campaign (tests/factories/events.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.factories.events import Catalog, build_catalog


@pytest.fixture
async def catalog(make_team, client: httpx.AsyncClient) -> Catalog:  # type: ignore[no-untyped-def]
    return await build_catalog(client, await make_team("pro"))
