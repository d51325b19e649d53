"""Report fixtures: a recorder to count downloads with, and a deal (tests/factories/reports.py) built on it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement.prefix import Buffer
from castmetrics.measurement.recorder import Recorder
from tests.factories.reports import Deal, make_deal


@pytest.fixture
def recorder(settings: Settings, db: Database, tmp_path: Path) -> Recorder:
    return Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())


@pytest.fixture
async def deal(make_team, client: httpx.AsyncClient, owner_db: Database, recorder: Recorder) -> Deal:  # type: ignore[no-untyped-def]
    return await make_deal(client, await make_team("pro"), owner_db, recorder)
