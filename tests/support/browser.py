"""Browser tests' plumbing: Debian's Chromium (installed here when missing), Playwright driving it, the
demo network served on a real port, and the folder the run keeps its screenshots in."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo import listening
from castmetrics.demo import service as demo
from tests.support.paths import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Kept after the run (git ignores it): one PNG per page and screen size.
SCREENSHOTS = Path(os.environ.get("CASTMETRICS_SCREENSHOTS", REPO_ROOT / "test-artifacts" / "screenshots"))
# The machine's network is closed: Chromium must not try to phone home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
DEMO_LISTENER_EVENTS = 20_000


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt when it is not there (browser downloads are impossible)."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.fail("Chromium is missing and apt-get is not available: install Debian's chromium package")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["update", "-q"], ["install", "-y", "-q", "--no-install-recommends", "chromium"]):
        done = subprocess.run([*prefix, apt, *command], env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0 and command[0] == "install":
            pytest.fail(f"installing chromium failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    assert CHROMIUM.exists(), "apt installed chromium, but /usr/bin/chromium is missing"
    return CHROMIUM


async def seed_demo(owner_db: Database, db: Database, settings: Settings) -> demo.DemoSummary:
    """The demo network with some weeks of listening, downloads, and its campaigns' delivery."""
    summary = await demo.seed(owner_db, db, settings)
    now = datetime.now(UTC)
    heard = await listening.generate(
        db, summary.tenant.id, DEMO_LISTENER_EVENTS, retention_days=730, now=now, days=35, settings=settings
    )
    assert heard.rejected == 0, heard.errors
    await demo.seed_campaign_delivery(db, summary.tenant.id, settings, now=now)
    return summary


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    executable = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def shoot(page: Page, name: str) -> Path:
    """A full-page screenshot into the kept folder."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path
