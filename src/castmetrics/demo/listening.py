"""Demo listening: the audience's planned sessions (``demo.audience``) written as listener events through
ingestion, with their prefix requests (``demo.downloads``), and the rollups of the days covered rebuilt."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select, text

from castmetrics.catalog.models import Episode
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo import downloads
from castmetrics.demo.audience import PARTITION_CHUNK_DAYS, ROLLUP_CHUNK_DAYS, WINDOW_DAYS, DemoEpisode, plan
from castmetrics.events import partitions
from castmetrics.events import service as events
from castmetrics.rollups import service as rollups
from castmetrics.tenancy.models import Tenant


@dataclass
class ListeningResult:
    """What a run wrote: events sent, newly stored, already there, refused; the rollup days rebuilt."""

    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)  # the first few refusals, should there be any
    rollup_days: int = 0
    seconds: float = 0.0
    requests: int = 0  # prefix requests sent (``demo.downloads``), of which bots
    requests_stored: int = 0
    bot_requests: int = 0
    request_seconds: float = 0.0  # of the seconds, those the run spent on them (the rest overlapped the events)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        text = (
            f"Listening: {self.events:,} events ({self.accepted:,} new, {self.duplicates:,} duplicates"
            + (f", {self.rejected:,} refused" if self.rejected else "")
            + f") in {self.seconds:.1f} s ({self.rate:,.0f} events/s); rollups rebuilt for {self.rollup_days} days"
        )
        if self.requests:
            text += (
                f"\nDownloads: {self.requests:,} prefix requests ({self.requests_stored:,} new, "
                f"{self.bot_requests:,} from bots) in {self.request_seconds:.1f} s of it"
            )
        return text


async def demo_episodes(db: Database, tenant_id: uuid.UUID) -> list[DemoEpisode]:
    """The tenant's episodes, as the generator sees them."""
    async with db.tenant_transaction(tenant_id) as session:
        rows = await session.execute(
            select(Episode.id, Episode.podcast_id, Episode.published_at, Episode.duration_seconds)
        )
        return [DemoEpisode(*row) for row in rows]


async def has_listening(db: Database, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant has any listener event stored."""
    async with db.tenant_transaction(tenant_id) as session:
        return bool((await session.execute(text("SELECT EXISTS (SELECT 1 FROM listener_events)"))).scalar_one())


async def generate(
    db: Database,
    tenant_id: uuid.UUID,
    total: int,
    *,
    retention_days: int,
    now: datetime | None = None,
    days: int = WINDOW_DAYS,
    console: Console | None = None,
    settings: Settings | None = None,
) -> ListeningResult:
    """Write about ``total`` listener events for the tenant's episodes through ingestion (one batch per
    transaction, limits not enforced), then rebuild the rollups of the days covered. With ``settings``
    (the measurement key), the sessions' prefix requests too (``demo.downloads``), stored as the
    recorder stores them. ``console`` shows progress; the window never reaches past the retention."""
    started = time.perf_counter()
    moment = now or datetime.now(UTC)
    the_plan = plan(await demo_episodes(db, tenant_id), total, now=moment, days=min(days, retention_days - 1))
    result = ListeningResult()
    first_day, last_day = the_plan.utc_days
    feed: downloads.Feed | None = None
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    ) as progress:
        try:
            if the_plan.expected_events:  # every day at once, not one transaction per day as batches meet them
                span = (last_day - first_day).days + 1
                creating = progress.add_task("Day partitions", total=span)
                for offset in range(0, span, PARTITION_CHUNK_DAYS):
                    chunk = first_day + timedelta(days=offset)
                    await partitions.ensure(db, chunk, min(last_day, chunk + timedelta(days=PARTITION_CHUNK_DAYS - 1)))
                    progress.update(creating, completed=min(span, offset + PARTITION_CHUNK_DAYS))
                if settings is not None:
                    feed = await downloads.Feed.start(db, tenant_id, the_plan, settings, progress)
            writing = progress.add_task("Listener events", total=the_plan.expected_events)
            for batch in the_plan.batches(sessions=feed.sessions if feed is not None else None):
                async with db.tenant_transaction(tenant_id) as session:
                    tenant = await session.get_one(Tenant, tenant_id)
                    written = await events.ingest(
                        session,
                        tenant,
                        "listener",
                        enumerate(batch),
                        db=db,
                        retention_days=retention_days,
                        enforce_limits=False,
                        now=moment,
                    )
                result.events += len(batch)
                result.accepted += written.accepted
                result.duplicates += written.duplicates
                result.rejected += len(written.rejected)
                result.errors += [r["error"] for r in written.rejected[: 5 - len(result.errors)]]
                progress.update(writing, completed=result.events, total=max(result.events, the_plan.expected_events))
                if feed is not None:
                    await feed.step()
            progress.update(writing, total=result.events)
            if feed is not None:
                await feed.finish()
                result.requests, result.requests_stored = feed.requests, feed.stored
                result.bot_requests, result.request_seconds = feed.traffic.bots, feed.seconds
            if result.events:
                span = (last_day - first_day).days + 1
                rebuilding = progress.add_task("Daily rollups", total=span)
                day = first_day
                while day <= last_day:
                    chunk_end = min(last_day, day + timedelta(days=ROLLUP_CHUNK_DAYS - 1))
                    async with db.tenant_transaction(tenant_id) as session:
                        result.rollup_days += await rollups.rebuild(session, tenant_id, day, chunk_end)
                    progress.update(rebuilding, completed=result.rollup_days)
                    day = chunk_end + timedelta(days=1)
        finally:
            if feed is not None:
                feed.cancel()  # on an error: stop the requests' task
    result.seconds = time.perf_counter() - started
    return result
