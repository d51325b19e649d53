"""Analytics fixtures: a recorder, and a show with ten days of downloads and listener events
(tests/factories/analytics.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement.prefix import Buffer
from castmetrics.measurement.recorder import Recorder
from tests.factories.analytics import Traffic, build_traffic


@pytest.fixture
def recorder(settings: Settings, db: Database, tmp_path: Path) -> Recorder:
    return Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())


@pytest.fixture
async def traffic(  # type: ignore[no-untyped-def]
    make_team, client: httpx.AsyncClient, owner_db: Database, recorder: Recorder
) -> Traffic:
    """A show of three episodes (two published inside the window), a second podcast, ten days of traffic."""
    return await build_traffic(client, await make_team("pro"), owner_db, recorder)
