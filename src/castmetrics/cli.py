"""The ``castmetrics`` command line: serve, worker, migrate, demo and tenant administration."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, TypeVar

import typer
from pydantic import ValidationError

from castmetrics.auth.principal import Actor
from castmetrics.config import (
    InsecureSettings,
    Settings,
    check_listen_address,
    check_production_safety,
    with_secret_key,
)
from castmetrics.db import migrate as migrations
from castmetrics.db import roles, urls
from castmetrics.db.embedded import EmbeddedPostgres
from castmetrics.db.session import Database
from castmetrics.errors import DomainError
from castmetrics.observability import configure_logging

if TYPE_CHECKING:
    from castmetrics.events import bulk

T = TypeVar("T")

app = typer.Typer(
    help="Castmetrics: podcast analytics and sponsorship. Without DATABASE_URL every command uses the "
    "embedded PostgreSQL in the data directory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tenant_app = typer.Typer(help="Operator commands on tenants (they act as the database owner).", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the embedded PostgreSQL keeps its data (default: user data dir).",
        envvar="CASTMETRICS_DATA_DIR",
        show_envvar=False,
    ),
]


def _settings(data_dir: Path | None = None, *, signs: bool = True) -> Settings:
    """The settings of a command; ``signs`` when it signs or verifies anything (or derives the runtime
    role's password), which gives the data directory its generated secret key if none is configured."""
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(f"invalid configuration: {exc}", code=2)
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir.expanduser().resolve()})
    try:
        check_production_safety(settings)  # outside development the key is configured, never generated
        if signs:
            settings = with_secret_key(settings)
    except InsecureSettings as exc:
        _fail(str(exc), code=2)
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@contextlib.contextmanager
def owner_database(settings: Settings) -> Iterator[str]:
    """The owner's URL: ``DATABASE_URL``, or the embedded server (started here, stopped on exit)."""
    if settings.database_url:
        try:
            urls.parse(settings.database_url)
        except Exception as exc:
            _fail(f"DATABASE_URL is not a PostgreSQL URL: {exc}", code=2)
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.data_dir, settings.embedded_database)
    typer.echo(f"Starting embedded PostgreSQL in {server.pgdata} …", err=True)
    try:
        owner_url = server.start()
    except Exception as exc:
        _fail(f"the embedded PostgreSQL did not start: {exc} (its log: {server.pgdata / 'log'})")
    try:
        yield owner_url
    finally:
        server.stop()


def _run_as_owner(owner_url: str, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        db = Database(owner_url, pool_size=2, max_overflow=0, application_name="castmetrics-cli")
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        _fail(exc.detail)


def _migrate(settings: Settings, owner_url: str) -> str:
    try:
        return migrations.migrate(settings, owner_url)
    except (roles.RuntimeRoleError, migrations.TenantIsolationError) as exc:
        _fail(str(exc))


def _print_demo(summary: Any, url: str) -> None:
    state = "created" if summary.created else "already present"
    typer.echo(f"Demo tenant {summary.tenant.slug!r} ({summary.tenant.subscription_tier} tier): {state}")
    typer.echo(f"Open the dashboard: {url}/")
    if summary.logins:
        typer.echo("Sign in as:")
        for role, email, password in summary.logins:
            typer.echo(f"  {role:<8} {email}  password: {password}")
    typer.echo(f"API docs: {url}/docs (log in with POST /v1/auth/login, then use the access token)")


def _seed_demo(
    settings: Settings,
    owner_url: str,
    runtime_url: str,
    events: int | None = None,
    days: int | None = None,
    *,
    webhook_base_url: str | None = None,
) -> Any:
    """Seed the demo catalog, then its listening: ``events`` events (``demo --events``: every time, a
    re-run stores none twice), or with ``None`` (``serve --demo``) ``settings.demo_events`` only while
    the demo tenant has no listener events yet. The demo's webhook workflow, created once, posts to the
    demo receiver at ``webhook_base_url`` (default ``http://127.0.0.1:8000``)."""
    from rich.console import Console
    from sqlalchemy import text

    from castmetrics.demo import audience, listening
    from castmetrics.demo import service as demo

    async def work(owner: Database) -> Any:
        # Three connections: listener events, and the prefix requests written beside them (demo.downloads).
        runtime = Database(runtime_url, pool_size=3, max_overflow=0, application_name="castmetrics-cli")
        try:
            if webhook_base_url is None:
                summary = await demo.seed(owner, runtime, settings)
            else:
                summary = await demo.seed(owner, runtime, settings, webhook_base_url=webhook_base_url)
            count = events
            if count is None:
                count = 0 if await listening.has_listening(runtime, summary.tenant.id) else settings.demo_events
            if count:
                typer.echo(f"Generating about {count:,} listener events for the demo …", err=True)
                async with owner.transaction() as session:  # the catalog just seeded: plan the rollups' joins well
                    await session.execute(text("ANALYZE episodes, podcasts"))
                result = await listening.generate(
                    runtime,
                    summary.tenant.id,
                    count,
                    retention_days=settings.event_retention_days,
                    days=days or audience.WINDOW_DAYS,
                    console=Console(stderr=True),
                    settings=settings,
                )
                typer.echo(result.describe())
                for error in result.errors:
                    typer.echo(f"  refused: {error}", err=True)
            # The campaigns' delivery (pacing sizes, impressions, clicks, conversions) follows the listening.
            delivery = summary.delivery
            if count and delivery is None:
                delivery = await demo.seed_campaign_delivery(runtime, summary.tenant.id, settings)
            if delivery is not None:
                typer.echo(delivery.describe())
            return summary
        finally:
            await runtime.dispose()

    return _run_as_owner(owner_url, work)


def demo_receiver_settings(settings: Settings, webhook_base_url: str) -> dict[str, Any]:
    """What ``serve --demo`` changes in the settings: the demo's webhook workflow posts to this server
    itself, on a loopback address, so the receiver is mounted and its one URL (the demo tenant's) is
    allowed as a private webhook target; private webhooks stay refused for every other URL and tenant."""
    from castmetrics.demo.service import DEMO_SLUG
    from castmetrics.demo.workflows import receiver_url

    allowed = [*settings.private_webhook_urls, receiver_url(webhook_base_url, DEMO_SLUG)]
    return {"demo_webhook_receiver": True, "private_webhook_urls": allowed}


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
    demo: Annotated[bool, typer.Option("--demo", help="Seed the demo tenant first (idempotent).")] = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 1,
) -> None:
    """Run the API and dashboard. Migrates first; on the embedded database also runs the job worker."""
    import uvicorn

    from castmetrics.app import create_app

    settings = _settings(data_dir)
    try:
        check_listen_address(settings, host)
    except InsecureSettings as exc:
        _fail(str(exc), code=2)
    embedded = not settings.database_url
    # uvicorn re-raises the SIGTERM it caught once it has shut down; turn it into a normal exit so
    # the embedded PostgreSQL is stopped by owner_database's cleanup.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with owner_database(settings) as owner_url:
        runtime_url = _migrate(settings, owner_url)
        url = f"http://{host}:{port}"
        # The demo's webhook goes to this server's own receiver: on a wildcard address, through loopback.
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        webhook_base_url = f"http://{f'[{local}]' if ':' in local else local}:{port}"
        if demo:
            _print_demo(_seed_demo(settings, owner_url, runtime_url, webhook_base_url=webhook_base_url), url)
        in_process = settings.in_process_worker if settings.in_process_worker is not None else embedded
        update: dict[str, Any] = {
            "database_url": owner_url,
            "app_database_url": runtime_url,
            "in_process_worker": in_process,
        }
        if demo and embedded:
            # Only on the embedded default: against your own database, the settings rule.
            update |= demo_receiver_settings(settings, webhook_base_url)
        settings = settings.model_copy(update=update)
        typer.echo(f"Castmetrics is starting at {url} (dashboard at {url}/, API docs at {url}/docs)", err=True)
        # The app reads X-Forwarded-For itself, from CASTMETRICS_TRUSTED_PROXIES only (app.Castmetrics).
        proxies: dict[str, Any] = {"proxy_headers": False}
        if workers == 1:
            uvicorn.run(create_app(settings), host=host, port=port, log_config=None, **proxies)
            return
        # Worker processes re-read their settings from the environment: hand the resolved URLs down.
        os.environ.update(
            {
                "DATABASE_URL": owner_url,
                "CASTMETRICS_APP_DATABASE_URL": runtime_url,
                "CASTMETRICS_SECRET_KEY": settings.secret_key.get_secret_value(),
                "CASTMETRICS_IN_PROCESS_WORKER": "true" if in_process else "false",
                "CASTMETRICS_DEMO_WEBHOOK_RECEIVER": "true" if settings.demo_webhook_receiver else "false",
                "CASTMETRICS_ALLOW_PRIVATE_WEBHOOKS": "true" if settings.allow_private_webhooks else "false",
                "CASTMETRICS_PRIVATE_WEBHOOK_URLS": json.dumps(settings.private_webhook_urls),
            }
        )
        uvicorn.run(
            "castmetrics.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            **proxies,
        )


@app.command()
def worker(
    data_dir: DataDir = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Jobs run at once.")] = 4,
) -> None:
    """Run background jobs (RSS sync, rollups, partitions, retention, outbox, emails) until stopped.

    The worker restarts itself, after 1 s doubling up to 30 s, whenever it stops or fails (a database
    restart ends it), so it exits only on SIGINT or SIGTERM, letting running jobs finish for up to 30 s.
    Its tasks share CASTMETRICS_WORKER_POOL_SIZE connections (raise it with --concurrency).
    """
    from castmetrics.jobs import worker as job_worker

    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        runtime_url = _migrate(settings, owner_url)

        async def main() -> None:
            db = Database(
                runtime_url, pool_size=settings.worker_pool_size, max_overflow=0, application_name="castmetrics-worker"
            )
            try:
                await job_worker.run(db, settings=settings, concurrency=concurrency)
            finally:
                await db.dispose()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply all database migrations as the owner and set up the runtime role's access."""
    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        _migrate(settings, owner_url)
        typer.echo(f"Database {urls.safe(owner_url)} is at the latest schema.")


@app.command("demo")
def demo_command(
    data_dir: DataDir = None,
    events: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="About how many listener events to generate (default: CASTMETRICS_DEMO_EVENTS, 1,000,000); "
            "0 seeds only the catalog.",
            show_default=False,
        ),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=700, help="Days of listening history, up to now.")] = 700,
) -> None:
    """Seed the demo tenant and its listening (idempotent: a re-run stores no event twice) and print how
    to log in."""
    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        runtime_url = _migrate(settings, owner_url)
        count = settings.demo_events if events is None else events
        _print_demo(_seed_demo(settings, owner_url, runtime_url, count, days), settings.public_url)


# --- tenants -------------------------------------------------------------------------------------

OPERATOR = Actor.system(f"cli:{os.environ.get('USER', 'operator')}")


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Display name of the network.")],
    slug: Annotated[str, typer.Option(help="URL-safe identifier: lower-case letters, digits, dashes.")],
    tier: Annotated[str, typer.Option(help="free, pro or enterprise.")] = "free",
    time_zone: Annotated[str, typer.Option(help="IANA time zone for dashboards.")] = "UTC",
    billing_email: Annotated[str | None, typer.Option(help="Where invoices go.")] = None,
    domain: Annotated[str | None, typer.Option(help="The tenant's own domain, if any.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a tenant."""
    from castmetrics.identity import service as identity
    from castmetrics.tenancy.schemas import TenantCreate

    try:
        data = TenantCreate(
            name=name,
            slug=slug,
            subscription_tier=tier,
            time_zone=time_zone,
            billing_email=billing_email,
            domain=domain,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(problems, code=2)
    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        _migrate(settings, owner_url)

        async def work(db: Database) -> Any:
            async with db.transaction() as session:
                return await identity.provision_tenant(session, data, OPERATOR)

        tenant = _run_as_owner(owner_url, work)
        typer.echo(f"Created tenant {tenant.slug} ({tenant.id}), tier {tenant.subscription_tier}")


@tenant_app.command("list")
def tenant_list(
    status: Annotated[str | None, typer.Option(help="Only tenants in this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List all tenants, newest first."""
    from castmetrics.tenancy import service as tenancy
    from castmetrics.tenancy.schemas import TenantOut

    if status not in (None, "active", "suspended", "cancelled"):
        _fail("--status must be active, suspended or cancelled", code=2)
    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        _migrate(settings, owner_url)

        async def work(db: Database) -> list[TenantOut]:
            found: list[TenantOut] = []
            cursor: str | None = None
            async with db.transaction() as session:
                while True:
                    page, cursor = await tenancy.list_page(session, limit=500, cursor=cursor, status=status)
                    found.extend(TenantOut.model_validate(t) for t in page)
                    if cursor is None:
                        return found

        tenants = _run_as_owner(owner_url, work)
    if as_json:
        for tenant in tenants:
            sys.stdout.write(json.dumps(tenant.model_dump(mode="json")) + "\n")
        return
    typer.echo(f"{'SLUG':<24} {'TIER':<11} {'STATUS':<10} {'CREATED':<20} NAME")
    for tenant in tenants:
        created = tenant.created_at.strftime("%Y-%m-%d %H:%M")
        tier, status = tenant.subscription_tier, tenant.status
        typer.echo(f"{tenant.slug:<24} {tier:<11} {status:<10} {created:<20} {tenant.name}")
    typer.echo(f"{len(tenants)} tenant(s)", err=True)


def _set_status(slug: str, status: str, data_dir: Path | None) -> None:
    from castmetrics.tenancy import service as tenancy

    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        _migrate(settings, owner_url)

        async def work(db: Database) -> Any:
            async with db.transaction() as session:
                tenant = await tenancy.get_by_slug(session, slug)
                return await tenancy.set_status(session, tenant, status, OPERATOR)

        tenant = _run_as_owner(owner_url, work)
        typer.echo(f"Tenant {tenant.slug} is {tenant.status}")


@tenant_app.command("suspend")
def tenant_suspend(slug: str, data_dir: DataDir = None) -> None:
    """Suspend a tenant: it may still read, but not write or ingest."""
    _set_status(slug, "suspended", data_dir)


@tenant_app.command("activate")
def tenant_activate(slug: str, data_dir: DataDir = None) -> None:
    """Re-activate a suspended or cancelled tenant."""
    _set_status(slug, "active", data_dir)


@tenant_app.command("cancel")
def tenant_cancel(slug: str, data_dir: DataDir = None) -> None:
    """Cancel a tenant: every request answers 403; data is kept."""
    _set_status(slug, "cancelled", data_dir)


# --- platform administrators ---------------------------------------------------------------------

admin_app = typer.Typer(
    help="Platform administrators: operators who log in at /v1/admin/login and act across tenants.",
    no_args_is_help=True,
)
app.add_typer(admin_app, name="admin")


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Argument(help="The administrator's login email.")],
    name: Annotated[str, typer.Option(help="The administrator's display name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input instead of prompting.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a platform administrator. Asks for the password twice (or reads it from stdin)."""
    from castmetrics.identity import passwords
    from castmetrics.platform import service as platform
    from castmetrics.platform.schemas import AdminCreate

    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:  # refused before any database starts; the service checks the policy again
        data = AdminCreate(email=email, name=name, password=password)
        passwords.check_policy(data.password, email=str(data.email), name=data.name)
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), code=2)
    except DomainError as exc:
        _fail(exc.detail, code=2)
    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        _migrate(settings, owner_url)

        async def work(db: Database) -> Any:
            async with db.transaction() as session:
                return await platform.create_admin(
                    session, settings, email=str(data.email), name=data.name, password=data.password
                )

        admin = _run_as_owner(owner_url, work)
        typer.echo(f"Created platform administrator {admin.email} ({admin.id})")


@app.command("import-rss")
def import_rss(
    url: Annotated[str, typer.Argument(help="The podcast's RSS feed URL (http or https).")],
    tenant: Annotated[str, typer.Option("--tenant", help="Slug of the tenant the podcast belongs to.")],
    data_dir: DataDir = None,
) -> None:
    """Create (or find) the tenant's podcast for a feed and sync its episodes now."""
    from castmetrics.catalog import service as catalog

    if not url.startswith(("http://", "https://")):
        _fail("the feed URL must start with http:// or https://", code=2)
    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        runtime_url = _migrate(settings, owner_url)

        async def work(owner: Database) -> Any:
            runtime = Database(runtime_url, pool_size=2, max_overflow=0, application_name="castmetrics-cli")
            try:
                return await catalog.import_feed(owner, runtime, settings, url, tenant)
            finally:
                await runtime.dispose()

        typer.echo(f"Fetching {url} …", err=True)
        podcast, report = _run_as_owner(owner_url, work)
    typer.echo(
        f"Podcast {podcast.name!r} ({podcast.id}): {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.left_feed} left the feed ({report.outcome}, {report.duration_ms} ms)"
    )
    for warning in report.warnings[:20]:
        typer.echo(f"  warning: {warning}", err=True)
    if len(report.warnings) > 20:
        typer.echo(f"  … and {len(report.warnings) - 20} more warnings", err=True)


# --- events and rollups --------------------------------------------------------------------------

events_app = typer.Typer(help="Event data: bulk import from NDJSON or CSV files.", no_args_is_help=True)
app.add_typer(events_app, name="events")
rollups_app = typer.Typer(
    help="Rollups: the listener and download aggregates the analytics read (refresh, rebuild).", no_args_is_help=True
)
app.add_typer(rollups_app, name="rollups")

partitions_app = typer.Typer(
    help="Event day partitions: ahead of time, past the retention, columnar history on Citus.", no_args_is_help=True
)
app.add_typer(partitions_app, name="partitions")

REJECTS_SHOWN = 50


def _tenant_for_slug(owner: Database, slug: str) -> Awaitable[Any]:
    """The tenant row by slug, read as the owner (the lookup crosses tenants); None when missing."""
    from sqlalchemy import select

    from castmetrics.tenancy.models import Tenant

    async def find() -> Any:
        async with owner.transaction() as session:
            return await session.scalar(select(Tenant).where(Tenant.slug == slug))

    return find()


def _open_import(
    file: Path, file_format: str | None, kind: str, rejects: Path | None
) -> tuple[bulk.Source, TextIO | None]:
    """The import's source and its rejects file (when asked for); bad options exit with status 2."""
    from castmetrics.events import bulk, service

    if kind not in service.KINDS:
        _fail(f"--kind must be listener or attribution (got {kind!r})", code=2)
    try:
        source = bulk.Source(file, bulk.detect_format(file, file_format), kind)
    except bulk.BadInput as exc:
        _fail(str(exc), code=2)
    try:
        rejects_out = bulk.open_text(rejects) if rejects is not None else None
    except bulk.BadInput as exc:
        source.close()
        _fail(str(exc), code=2)
    return source, rejects_out


def _keep_refusals(report: bulk.Report, shown: list[dict[str, Any]], rejects_out: TextIO | None) -> None:
    """Keep a batch's first refusals in ``shown`` and write every one of them to the rejects file."""
    shown.extend({"index": r["index"], "error": r["error"]} for r in report.rejected[:REJECTS_SHOWN])
    if len(shown) > 4 * REJECTS_SHOWN:  # parts run in parallel: keep the first lines
        shown.sort(key=lambda r: r["index"])
        del shown[REJECTS_SHOWN:]
    if rejects_out is not None:
        for refused in report.rejected:
            line = {"line": refused["index"], "error": refused["error"], "record": refused.get("record")}
            rejects_out.write(json.dumps(line) + "\n")


def _echo_import_report(
    what: str,
    totals: bulk.Totals,
    shown: list[dict[str, Any]],
    rejects: Path | None,
    *,
    elapsed: float,
    processes: int,
) -> None:
    """Print an import's first refused lines and its totals (``what``: the file, tenant, kind and format)."""
    shown.sort(key=lambda r: r["index"])
    for refused in shown[:REJECTS_SHOWN]:
        typer.echo(f"line {refused['index']}: {refused['error']}")
    if totals.rejected > REJECTS_SHOWN:
        more = f"  … and {totals.rejected - REJECTS_SHOWN:,} more"
        typer.echo(more + (f" (all of them in {rejects})" if rejects else " (--rejects FILE writes them all)"))
    rate = totals.records / elapsed if elapsed > 0 else 0.0
    typer.echo(
        f"{what}: {totals.lines_read:,} lines read, "
        f"{totals.accepted:,} accepted, {totals.duplicates:,} duplicates, {totals.rejected:,} rejected "
        f"in {elapsed:.1f} s ({rate:,.0f} events/s{f', {processes} processes' if processes > 1 else ''})"
    )


@events_app.command("import")
def events_import(
    file: Annotated[
        Path,
        typer.Argument(help="NDJSON (one event object per line) or CSV with a header row; .gz files are read too."),
    ],
    tenant: Annotated[str, typer.Option("--tenant", help="Slug of the tenant the events belong to.")],
    kind: Annotated[str, typer.Option(help="listener or attribution.")] = "listener",
    file_format: Annotated[
        str | None,
        typer.Option("--format", help="ndjson or csv (default: by the file's extension).", show_default=False),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Events per batch (one transaction each).")
    ] = 10_000,
    jobs: Annotated[
        int,
        typer.Option(
            min=0,
            max=64,
            help="Worker processes for an uncompressed NDJSON file, each taking a part of at least 32 MB "
            "(0: one per CPU, up to 4). CSV and .gz files are read by one process.",
        ),
    ] = 0,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="Write every refused record with its line and reason to this NDJSON file.", show_default=False
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Import events from a file through the ingestion API's validation and COPY path.

    Each batch is a transaction of its own and events already stored count as duplicates, so an import
    can be re-run safely. Usage is counted; quotas and the ingest rate do not apply. Refused records are
    reported by line (a CSV header is line 1). Exit status: 0 when every record was stored or was a
    duplicate, 1 when some were refused (the others are kept), 2 when nothing could be imported
    (unknown tenant, unreadable file, bad options).
    """
    import gc

    import psycopg
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
    from sqlalchemy.exc import SQLAlchemyError

    from castmetrics.events import bulk
    from castmetrics.tenancy.models import Tenant

    source, rejects_out = _open_import(file, file_format, kind, rejects)
    shown: list[dict[str, Any]] = []  # the first refusals by line
    totals = bulk.Totals()
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[events]:>12,} events"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    task = progress.add_task(f"Importing {file.name}", total=source.size or None, events=0)

    def on_batch(report: bulk.Report, now: bulk.Totals) -> None:
        progress.update(task, completed=now.position, events=now.records)
        if now.batches % 20 == 0:
            gc.collect()  # the automatic collector is off during the import (see below)
        if report.rejected:
            _keep_refusals(report, shown, rejects_out)

    settings = _settings(data_dir)
    failures: list[str] = []
    parts: list[bulk.Part] = []
    started = finished = time.perf_counter()
    try:
        with owner_database(settings) as owner_url:
            runtime_url = _migrate(settings, owner_url)
            found: Any = _run_as_owner(owner_url, lambda owner: _tenant_for_slug(owner, tenant))
            if found is None:
                _fail(f"no tenant with slug {tenant!r}", code=2)
            if found.status != "active":
                _fail(f"tenant {tenant!r} is {found.status}: activate it first to import events", code=2)
            if source.format == "ndjson" and file.suffix.lower() != ".gz" and jobs != 1:
                parts = bulk.plan_parts(file, jobs or min(4, os.cpu_count() or 1))
            # The import allocates millions of short-lived containers and makes no reference cycles,
            # so the cyclic collector (whose passes would scan every batch in flight, and the modules
            # loaded so far, over and over) is off for its duration and run every 20 batches instead.
            gc.collect()
            gc.freeze()
            gc.disable()
            started = time.perf_counter()
            try:
                with progress:
                    if len(parts) > 1:
                        jobs_of = [
                            bulk.PartJob(
                                index, runtime_url, found.id, file, kind, part, batch_size,
                                settings.event_retention_days, rejects_out is not None,
                            )
                            for index, part in enumerate(parts)
                        ]  # fmt: skip
                        failures = bulk.run_parts(jobs_of, on_batch, totals)
                    else:

                        async def import_here() -> None:
                            runtime = Database(
                                runtime_url, pool_size=2, max_overflow=1, application_name="castmetrics-import"
                            )
                            try:
                                async with runtime.tenant_transaction(found.id) as session:
                                    acting = await session.get_one(Tenant, found.id)
                                await bulk.run(
                                    source,
                                    runtime,
                                    acting,
                                    batch_size=batch_size,
                                    retention_days=settings.event_retention_days,
                                    keep_records=rejects_out is not None,
                                    on_batch=on_batch,
                                    totals=totals,
                                )
                            finally:
                                await runtime.dispose()

                        asyncio.run(import_here())
            except (bulk.ReadFailed, SQLAlchemyError, psycopg.Error, OSError) as exc:
                failures.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            finally:
                finished = time.perf_counter()
                gc.enable()
    finally:
        source.close()
        if rejects_out is not None:
            rejects_out.close()
    _echo_import_report(
        f"{file.name} → tenant {tenant} ({kind} events, {source.format})",
        totals,
        shown,
        rejects,
        elapsed=finished - started,
        processes=len(parts),
    )
    if failures:
        stored = f"{totals.batches:,} batches are stored" if totals.batches else "nothing was stored"
        _fail(
            f"the import stopped: {'; '.join(failures)}. {stored.capitalize()}; running the import again "
            "skips the events stored as duplicates.",
            code=1,
        )
    if totals.rejected:
        raise typer.Exit(1)


@partitions_app.command("maintain")
def partitions_maintain(
    as_json: Annotated[
        bool, typer.Option("--json", help='One line: {"created", "dropped", "columnar", "seconds"}.')
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Run the partition maintenance job once, now: the day partitions from yesterday to a week ahead, those
    past CASTMETRICS_EVENT_RETENTION_DAYS dropped, and on Citus the days older than
    CASTMETRICS_COLUMNAR_AFTER_DAYS converted to columnar storage ("columnar": null on a single server)."""
    from castmetrics.events import partitions

    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        runtime_url = _migrate(settings, owner_url)

        async def work(runtime: Database) -> dict[str, Any]:
            started = time.perf_counter()
            done = await partitions.maintain(
                runtime, settings.event_retention_days, columnar_after_days=settings.columnar_after_days
            )
            return {**done, "seconds": round(time.perf_counter() - started, 3)}

        done = _run_as_owner(runtime_url, work)
    if as_json:
        typer.echo(json.dumps(done))
        return
    typer.echo(f"{done['created']} partition(s) created (yesterday to {partitions.AHEAD_DAYS} days ahead).")
    dropped = done["dropped"]
    typer.echo(f"{len(dropped)} partition(s) dropped past the {settings.event_retention_days}-day retention.")
    for name in dropped:
        typer.echo(f"  dropped {name}")
    columnar = done["columnar"]
    if columnar is None:
        typer.echo("Columnar storage: not on this server (Citus only); every day stays in heap partitions.")
    else:
        typer.echo(
            f"{len(columnar)} partition(s) converted to columnar storage (older than "
            f"{settings.columnar_after_days} days)."
        )
        for name in columnar:
            typer.echo(f"  columnar {name}")
    typer.echo(f"Done in {done['seconds']:.3f} s.")


@rollups_app.command("refresh")
def rollups_refresh(
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant", help="Slug of one tenant (default: every tenant with pending work).", show_default=False
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='One line: {"tenants", "buckets", "events", "seconds"}.')
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Run one refresh cycle now, the periodic job's own: every tenant with pending work (or one) takes
    its oldest new events and requests, up to CASTMETRICS_ROLLUP_CYCLE_EVENTS each. Run it again to
    continue; it reports 0 events once nothing committed before it started is pending. To run cycles
    only from here, start serve with CASTMETRICS_IN_PROCESS_WORKER=false and no worker."""
    from castmetrics.rollups import service as rollups

    settings = _settings(data_dir)
    with owner_database(settings) as owner_url:
        runtime_url = _migrate(settings, owner_url)

        async def work(owner: Database) -> tuple[rollups.Cycle, dict[Any, str]]:
            targets = None
            if tenant is not None:
                found = await _tenant_for_slug(owner, tenant)
                if found is None:
                    _fail(f"no tenant with slug {tenant!r}", code=2)
                targets = [found.id]
            runtime = Database(runtime_url, pool_size=1, max_overflow=0, application_name="castmetrics-cli")
            try:
                cycle = await rollups.refresh_cycle(
                    runtime, cycle_events=settings.rollup_cycle_events, tenant_ids=targets
                )
            finally:
                await runtime.dispose()
            async with owner.transaction() as session:
                slugs = await _slugs(session, [done.tenant_id for done in cycle.tenants])
            return cycle, slugs

        cycle, slugs = _run_as_owner(owner_url, work)
    if as_json:
        typer.echo(json.dumps(cycle.as_dict()))
        return
    for done in cycle.tenants:
        typer.echo(
            f"{slugs.get(done.tenant_id, done.tenant_id)}: {done.events} new events and requests, "
            f"{done.buckets} (kind, day) rollups brought up to date"
        )
    typer.echo(
        f"One cycle: {len(cycle.tenants)} tenant(s), {cycle.buckets} rollup days, {cycle.events} new events "
        f"and requests in {cycle.seconds:.3f} s."
    )


async def _slugs(session: Any, tenant_ids: list[Any]) -> dict[Any, str]:
    """Slugs by tenant id, read as the owner."""
    from sqlalchemy import select

    from castmetrics.tenancy.models import Tenant

    rows = await session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(tenant_ids)))
    return {row.id: row.slug for row in rows}


@rollups_app.command("rebuild")
def rollups_rebuild(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Slug of one tenant (default: every tenant).", show_default=False)
    ] = None,
    first: Annotated[
        datetime | None,
        typer.Option(
            "--from", formats=["%Y-%m-%d"], help="First day (UTC; default: 29 days before --to).", show_default=False
        ),
    ] = None,
    last: Annotated[
        datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Last day (UTC; default: today).", show_default=False),
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="listener (events), download (prefix requests) or all.")] = "all",
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, max=16, help="Chunks of days rebuilt side by side (connections).")
    ] = 2,
    data_dir: DataDir = None,
) -> None:
    """Recompute the rollups of a date range from raw events and download requests (default: the last
    30 days), a month at most per transaction, with a progress bar. Days whose raw rows are past the
    retention (CASTMETRICS_EVENT_RETENTION_DAYS) are skipped and reported: their rollups are the only
    copy of their totals."""
    from datetime import UTC, timedelta

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy import select

    from castmetrics.events.partitions import AcceptedRange, utc_now
    from castmetrics.rollups import service as rollups
    from castmetrics.tenancy.models import Tenant

    last_day = last.date() if last is not None else datetime.now(UTC).date()
    first_day = first.date() if first is not None else last_day - timedelta(days=29)
    if first_day > last_day:
        _fail(f"--from ({first_day}) is after --to ({last_day})", code=2)
    kinds = {"listener": ("listener",), "download": ("download",), "all": ("listener", "download")}.get(kind)
    if kinds is None:
        _fail(f"--kind must be listener, download or all (got {kind!r})", code=2)
    settings = _settings(data_dir)
    keep_from = AcceptedRange.at(utc_now(), settings.event_retention_days).earliest.date()
    console = Console(stderr=True)
    with owner_database(settings) as owner_url:
        runtime_url = _migrate(settings, owner_url)

        async def work(owner: Database) -> list[tuple[str, rollups.Rebuilt]]:
            if tenant is not None:
                found = await _tenant_for_slug(owner, tenant)
                if found is None:
                    _fail(f"no tenant with slug {tenant!r}", code=2)
                targets = [(found.id, found.slug)]
            else:
                async with owner.transaction() as session:
                    targets = [
                        (row.id, row.slug)
                        for row in await session.execute(select(Tenant.id, Tenant.slug).order_by(Tenant.slug))
                    ]
            runtime = Database(runtime_url, pool_size=jobs, max_overflow=0, application_name="castmetrics-cli")
            done: list[tuple[str, rollups.Rebuilt]] = []
            progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("days"),
                TimeElapsedColumn(),
                console=console,
                disable=not console.is_terminal,
            )
            try:
                with progress:
                    for tenant_id, slug in targets:
                        task = progress.add_task(slug, total=max(0, (last_day - max(first_day, keep_from)).days + 1))

                        def advance(days: int, task: Any = task) -> None:
                            progress.advance(task, days)

                        rebuilt = await rollups.rebuild_range(
                            runtime, tenant_id, first_day, last_day, kinds, keep_from=keep_from, jobs=jobs,
                            progress=advance,
                        )  # fmt: skip
                        typer.echo(_rebuilt_line(slug, rebuilt, first_day, last_day))
                        done.append((slug, rebuilt))
            finally:
                await runtime.dispose()
            return done

        done = _run_as_owner(owner_url, work)
    typer.echo(f"Rollups rebuilt for {len(done)} tenant(s).", err=True)


def _rebuilt_line(slug: str, rebuilt: Any, first: Any, last: Any) -> str:
    line = f"{slug}: {rebuilt.days} days rebuilt ({first} to {last})"
    if rebuilt.skipped:
        line += (
            f"; {len(rebuilt.skipped)} days skipped ({rebuilt.skipped[0]} to {rebuilt.skipped[-1]}): "
            "their raw rows are past the retention, their rollups are kept as they are"
        )
    return line


# --- user-agent lists -----------------------------------------------------------------------------

useragents_app = typer.Typer(
    help="The OPAWG user-agent lists that classify prefix requests (apps, bots, browsers …).", no_args_is_help=True
)
app.add_typer(useragents_app, name="useragents")


def _list_version(path: Path) -> str | None:
    """What a list file says of its version, if anything."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("version", "updated", "date", "lastUpdated"):
        value = document.get(key) if isinstance(document, dict) else None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    return None


def _source_note(folder: Path) -> str | None:
    """The upstream commit and date a SOURCES file names (as the bundled SOURCES.md does)."""
    import re

    for name in ("SOURCES.md", "SOURCES", "SOURCES.txt"):
        path = folder / name
        if path.is_file():
            content = path.read_text(encoding="utf-8", errors="replace")
            commit = re.search(r"\bcommit\s+([0-9a-f]{7,40})\b", content)
            day = re.search(r"\b(\d{4}-\d{2}-\d{2})\b", content)
            parts = [f"commit {commit.group(1)[:12]}" if commit else "", f"of {day.group(1)}" if day else ""]
            return " ".join(part for part in parts if part) or f"see {name}"
    return None


def _print_lists(folder: Path, lists: dict[str, Any]) -> None:
    from castmetrics.measurement import useragents

    for name in useragents.LIST_NAMES:
        version = _list_version(folder / f"{name}.json")
        typer.echo(f"  {name:<10} {len(lists[name].entries):>5} entries" + (f"  version {version}" if version else ""))
    if source := _source_note(folder):
        typer.echo(f"  source: {source}")


@useragents_app.command("install")
def useragents_install(
    folder: Annotated[
        Path, typer.Argument(help="A folder with the six list files (apps.json, bots.json, …), e.g. the lists' src/.")
    ],
    data_dir: DataDir = None,
) -> None:
    """Check newer OPAWG user-agent lists and install them into <data dir>/useragents/ (replacing any installed
    before, in one rename). Running servers switch to them within a minute, new processes use them at start.
    Lists that do not load exit 2 and change nothing."""
    import shutil
    import uuid

    from castmetrics.measurement import useragents

    settings = _settings(data_dir, signs=False)
    source = folder.expanduser()
    if not source.is_dir():
        _fail(f"{source} is not a folder", code=2)
    try:
        classifier = useragents.load(source)
    except useragents.UserAgentListError as exc:
        _fail(f"nothing installed: the lists in {source} do not load: {exc}", code=2)
    target = settings.data_dir / useragents.INSTALLED_FOLDER
    staging = settings.data_dir / f".useragents-new-{uuid.uuid4().hex[:12]}"
    retired = settings.data_dir / f".useragents-old-{uuid.uuid4().hex[:12]}"
    names = [f"{name}.json" for name in useragents.LIST_NAMES]
    names += [name for name in useragents.EXTRA_FILES if (source / name).is_file()]
    try:
        staging.mkdir(parents=True)
        for name in names:
            shutil.copyfile(source / name, staging / name)
        replacing = target.exists()
        if replacing:
            os.replace(target, retired)
        try:
            os.replace(staging, target)
        except OSError:
            if replacing:
                os.replace(retired, target)
            raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _fail(f"nothing installed into {target}: {exc}")
    shutil.rmtree(retired, ignore_errors=True)
    typer.echo(f"Installed the user-agent lists of {source} into {target}:")
    _print_lists(target, classifier.lists)
    typer.echo("Running servers switch to them within a minute; new processes use them from the start.")


@useragents_app.command("show")
def useragents_show(data_dir: DataDir = None) -> None:
    """Which user-agent lists classify requests: those installed in <data dir>/useragents/, else the bundled
    ones; with the entries of each list."""
    from castmetrics.measurement import useragents

    settings = _settings(data_dir, signs=False)
    target = settings.data_dir / useragents.INSTALLED_FOLDER
    if target.exists():
        try:
            lists = useragents.read_lists(target)
        except useragents.UserAgentListError as exc:
            typer.secho(
                f"warning: the lists installed in {target} do not load ({exc}); the bundled lists are used",
                err=True,
                fg=typer.colors.YELLOW,
            )
        else:
            typer.echo(f"Active: installed lists, {target}")
            _print_lists(target, lists)
            return
    typer.echo(f"Active: bundled lists, {useragents.DATA_DIR}")
    _print_lists(useragents.DATA_DIR, useragents.read_lists(useragents.DATA_DIR))


def main() -> None:
    app()
