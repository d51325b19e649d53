"""The ``castmetrics`` command line run as a real subprocess against the test database."""

from __future__ import annotations

import os
import subprocess
import sys

from castmetrics.config import Settings


def run_cli(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "CASTMETRICS_APP_ROLE": settings.app_role,
        "CASTMETRICS_SECRET_KEY": settings.secret_key.get_secret_value(),
        "CASTMETRICS_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "castmetrics", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
