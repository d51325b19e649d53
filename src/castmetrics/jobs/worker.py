"""Running the job worker, supervised: standalone (``castmetrics worker``) or inside ``serve``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator

import procrastinate
import structlog

from castmetrics.config import Settings, get_settings
from castmetrics.db.errors import is_connection_error
from castmetrics.db.session import Database
from castmetrics.jobs import app as jobs_app
from castmetrics.jobs.heartbeat import Heartbeat

log = structlog.get_logger(__name__)

# procrastinate's worker stops for good when its database connection breaks (its listener fails and it
# shuts down): it is started again after this delay, doubling while it keeps failing, up to the cap.
RESTART_FIRST_DELAY = 1.0
RESTART_MAX_DELAY = 30.0
# A worker that ran this long before it stopped had recovered: the next restart waits the first delay.
STEADY_SECONDS = 60.0
# On a stop or restart, running jobs get this long to finish before they are cancelled (work that must
# survive that, like workflow executions, resumes from its lease).
GRACEFUL_SECONDS = 30.0


async def run(
    db: Database,
    *,
    settings: Settings | None = None,
    in_process: bool = False,
    concurrency: int = 4,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Work the queue until cancelled (or, standalone, until SIGINT or SIGTERM). Tasks get ``db`` (the
    runtime role's pool, the worker's own) in their context. Whenever procrastinate's worker stops or
    fails for any other reason, it is started again with backoff; ``heartbeat`` records that it works."""
    settings = settings or get_settings()
    heartbeat = heartbeat or Heartbeat(settings.worker_stale_seconds)
    stop = asyncio.Event()
    heartbeat.beat()  # the age counts from here until the worker shows it works
    heartbeat.publish()
    delay = RESTART_FIRST_DELAY
    try:
        with _stop_on_signals(stop, enabled=not in_process):
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await _work(db, settings, heartbeat, stop, in_process=in_process, concurrency=concurrency)
                    reason = "stopped"
                except Exception as exc:
                    reason = _describe(exc)
                    # A lost database is expected and says enough in one line; anything else gets its traceback.
                    log.warning("worker.failed", error=reason, exc_info=not is_connection_error(exc))
                if stop.is_set():
                    break
                if time.monotonic() - started >= STEADY_SECONDS:
                    delay = RESTART_FIRST_DELAY
                log.warning("worker.restarting", reason=reason, in_seconds=delay, restarts=heartbeat.restarts + 1)
                heartbeat.restarted()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, RESTART_MAX_DELAY)
    finally:
        heartbeat.unpublish()
    log.info("worker.stopped", in_process=in_process)


async def _work(
    db: Database, settings: Settings, heartbeat: Heartbeat, stop: asyncio.Event, *, in_process: bool, concurrency: int
) -> None:
    """One run of procrastinate's worker on a queue connection of its own, beating while it runs.
    Returns when it stops by itself or ``stop`` is set; raises what it failed with."""
    async with jobs_app.opened(db.url, max_size=concurrency + 2) as queue:
        log.info("worker.started", in_process=in_process, concurrency=concurrency)
        working = asyncio.create_task(
            queue.run_worker_async(
                concurrency=concurrency,
                additional_context={"db": db, "settings": settings},
                # Signals are the supervisor's: procrastinate's handler would stop the worker, which the
                # supervisor could not tell from a worker stopped by a broken connection.
                install_signal_handlers=False,
                shutdown_graceful_timeout=GRACEFUL_SECONDS,
            ),
            name="procrastinate worker",
        )
        beating = asyncio.create_task(_beat(queue, heartbeat), name="worker heartbeat")
        stopping = asyncio.create_task(stop.wait(), name="worker stop")
        try:
            await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            beating.cancel()
            stopping.cancel()
            if not working.done():
                working.cancel()  # procrastinate stops gracefully: running jobs get GRACEFUL_SECONDS
                await asyncio.wait({working})
        if not working.cancelled():
            working.result()  # what it failed with, if it failed


async def _beat(queue: procrastinate.App, heartbeat: Heartbeat) -> None:
    """Beat whenever the queue's connection answers, for as long as the worker runs."""
    while True:
        try:
            async with asyncio.timeout(heartbeat.every):
                await queue.check_connection_async()
        except Exception as exc:  # the queue does not answer: no beat, the age grows
            log.debug("worker.heartbeat_missed", error=_describe(exc))
        else:
            heartbeat.beat()
        await asyncio.sleep(heartbeat.every)


def _describe(exc: BaseException) -> str:
    """One line on what went wrong, from the innermost cause (procrastinate wraps every database error
    in a ``ConnectorException`` that says only "Database error")."""
    while exc.__cause__ is not None and not isinstance(exc, TimeoutError):
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event, *, enabled: bool) -> Iterator[None]:
    """Standalone, SIGINT and SIGTERM stop the worker gracefully; a second signal acts as if none was caught."""
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        log.info("worker.stopping")
        for number in signals:
            loop.remove_signal_handler(number)
        stop.set()

    for number in signals:
        loop.add_signal_handler(number, on_signal)
    try:
        yield
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
