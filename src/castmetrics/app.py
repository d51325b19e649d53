"""The FastAPI application factory: routes, problem handlers, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from castmetrics import __version__
from castmetrics.analytics import router as analytics_router
from castmetrics.analytics.cache import AnswerCache
from castmetrics.attribution import router as attribution_router
from castmetrics.audit import router as audit_router
from castmetrics.auth.cache import PrincipalCache
from castmetrics.auth.usage import UsageMeter
from castmetrics.billing import router as billing_router
from castmetrics.catalog import router as catalog_router
from castmetrics.config import Settings, check_production_safety, get_settings
from castmetrics.db import roles
from castmetrics.db.session import Database
from castmetrics.events import partitions
from castmetrics.events import router as events_router
from castmetrics.flags import router as flags_router
from castmetrics.http import health, openapi, problems
from castmetrics.http.middleware import BodyLimitMiddleware, RequestContextMiddleware
from castmetrics.idempotency.service import IdempotencyMiddleware
from castmetrics.identity import router as identity_router
from castmetrics.jobs.heartbeat import Heartbeat
from castmetrics.measurement.prefix import Buffer, Edge, trusted_networks
from castmetrics.measurement.recorder import Recorder
from castmetrics.measurement.tenant_directory import SNAPSHOT_FILE, TenantDirectory
from castmetrics.observability import configure_logging
from castmetrics.platform import router as platform_router
from castmetrics.preferences import router as preferences_router
from castmetrics.reports import router as reports_router
from castmetrics.sponsorship import router as sponsorship_router
from castmetrics.tenancy import router as tenancy_router
from castmetrics.web import router as web_router
from castmetrics.workflows import receiver as demo_webhook_receiver
from castmetrics.workflows import router as workflows_router

log = structlog.get_logger(__name__)


def _runtime_url(settings: Settings) -> str:
    if settings.app_database_url:
        return settings.app_database_url
    if not settings.database_url:
        raise RuntimeError("no database configured: run `castmetrics serve`, or set DATABASE_URL")
    return roles.runtime_url(settings, settings.database_url)


class Castmetrics(FastAPI):
    """The application, with the edge in front of Starlette's whole stack: the measurement prefix is
    the hottest path of the product and answers here, before routing and middleware."""

    edge: Edge | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        edge = self.edge
        if edge is not None and scope["type"] == "http":
            if edge.trusted_proxies:
                edge.resolve_client(scope)
            if edge.is_prefix(scope):
                await edge.redirect(scope, send)
                return
        await super().__call__(scope, receive, send)


async def _prepare_partitions(db: Database) -> None:
    """Start-up: event partitions from yesterday to a week ahead. A database that is not there yet
    only delays this: the periodic job and ingestion create partitions on demand."""
    today = partitions.utc_now().date()
    try:
        await partitions.ensure(db, today - timedelta(days=1), today + timedelta(days=partitions.AHEAD_DAYS))
    except Exception as exc:  # start-up must not fail on this
        log.warning("events.partitions_not_prepared", error=str(exc).splitlines()[0][:200])


def create_app(
    settings: Settings | None = None, *, database: Database | None = None, admin_database: Database | None = None
) -> FastAPI:
    """Build the ASGI app. ``database`` lets tests share one pool; otherwise it connects as the
    runtime role of ``settings``. ``admin_database`` (default: a small pool on the owner's
    ``DATABASE_URL``, if set) serves the platform admin routes, the only ones that see across tenants."""
    settings = settings or get_settings()
    check_production_safety(settings)
    db = database or Database(
        _runtime_url(settings),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        application_name="castmetrics-api",
    )
    admin_db = admin_database
    if admin_db is None and settings.database_url:
        admin_db = Database(settings.database_url, pool_size=2, max_overflow=2, application_name="castmetrics-admin")
    # The in-process job worker has a pool of its own, never more than its size: however much background
    # work there is, the requests' connections stay theirs.
    worker_db: Database | None = None
    heartbeat: Heartbeat | None = None
    if settings.in_process_worker:
        worker_db = Database(
            db.url, pool_size=settings.worker_pool_size, max_overflow=0, application_name="castmetrics-worker"
        )
        heartbeat = Heartbeat(settings.worker_stale_seconds)

    usage = UsageMeter()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker: asyncio.Task[None] | None = None
        await _prepare_partitions(db)
        await directory.start()  # the prefix's known slugs, before the first request (a few seconds at most)
        recording = asyncio.create_task(Recorder(db, settings, buffer, directory).run())
        metering = asyncio.create_task(usage.run(db, settings.usage_flush_seconds))
        if worker_db is not None:
            from castmetrics.jobs import worker as job_worker

            worker = asyncio.create_task(
                job_worker.run(worker_db, settings=settings, in_process=True, heartbeat=heartbeat)
            )
        try:
            yield
        finally:
            recording.cancel()  # its last flush stores (or spools) what the buffer still holds
            metering.cancel()  # and so does the usage meter's
            for task in (recording, metering):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await directory.stop()
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            if worker_db is not None:
                await worker_db.dispose()
            if database is None:
                await db.dispose()
            if admin_database is None and admin_db is not None:
                await admin_db.dispose()

    app = Castmetrics(
        title="Castmetrics",
        version=__version__,
        summary="Podcast analytics and sponsorship: IAB v2 downloads, listeners, pacing and attribution.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.analytics_cache = AnswerCache(settings.analytics_cache_seconds, settings.analytics_cache_entries)
    app.state.principals = PrincipalCache(settings.principal_cache_seconds)
    app.state.usage = usage
    app.state.admin_db = admin_db  # None: the admin routes answer 503
    app.state.worker_db = worker_db  # None: no job worker runs in this process
    app.state.worker_heartbeat = heartbeat  # what /readyz reports of it
    buffer = Buffer()
    app.state.prefix_buffer = buffer
    directory = TenantDirectory(
        db.url, refresh_seconds=settings.prefix_directory_refresh_seconds, snapshot=settings.data_dir / SNAPSHOT_FILE
    )
    app.state.prefix_directory = directory
    app.edge = Edge(buffer, trusted_networks(settings.trusted_proxies.split(",")), directory)
    problems.install(app)
    web_router.install(app)
    openapi.install(app)
    app.include_router(health.router)
    app.include_router(web_router.router)
    app.include_router(identity_router.auth_router)
    app.include_router(identity_router.router)
    app.include_router(tenancy_router.router)
    app.include_router(audit_router.router)
    app.include_router(catalog_router.router)
    app.include_router(catalog_router.feeds_router)
    app.include_router(flags_router.router)
    app.include_router(platform_router.router)
    app.include_router(preferences_router.router)
    app.include_router(sponsorship_router.router)
    app.include_router(reports_router.router)
    app.include_router(events_router.router)
    app.include_router(analytics_router.router)
    app.include_router(attribution_router.router)
    app.include_router(workflows_router.router)
    app.include_router(billing_router.router)
    if settings.demo_webhook_receiver:
        app.include_router(demo_webhook_receiver.router)
    # Added last runs first: the request id and access log wrap everything, including 413s.
    app.add_middleware(IdempotencyMiddleware, db_of=lambda: app.state.db)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        per_prefix={"/v1/events/": settings.events_max_body_bytes},
    )
    app.add_middleware(RequestContextMiddleware)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (``castmetrics serve`` with several workers)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
