"""Running the job worker: standalone (``castmetrics worker``) or inside ``serve``."""

from __future__ import annotations

import structlog

from castmetrics.config import Settings, get_settings
from castmetrics.db.session import Database
from castmetrics.jobs import app as jobs_app

log = structlog.get_logger(__name__)


async def run(
    db: Database, *, settings: Settings | None = None, in_process: bool = False, concurrency: int = 4
) -> None:
    """Work the queue until cancelled. Tasks get ``db`` (the runtime role's pool) in their context."""
    async with jobs_app.opened(db.url, max_size=concurrency + 2) as app:
        log.info("worker.started", in_process=in_process, concurrency=concurrency)
        await app.run_worker_async(
            concurrency=concurrency,
            additional_context={"db": db, "settings": settings or get_settings()},
            install_signal_handlers=not in_process,
        )
