"""Measurement fixtures: a team's show with audio URLs (tests/factories/measurement.py), and a recorder to feed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement.prefix import Buffer
from castmetrics.measurement.recorder import Recorder
from tests.factories.measurement import Show, make_show


@pytest.fixture
async def show(make_team, client: httpx.AsyncClient, owner_db: Database) -> Show:  # type: ignore[no-untyped-def]
    return await make_show(client, await make_team("pro"), owner_db)


@pytest.fixture
def recorder(settings: Settings, db: Database, tmp_path: Path) -> Recorder:
    return Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())
