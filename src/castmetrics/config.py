"""The one settings object: read once from the environment, passed down."""

from __future__ import annotations

import ipaddress
import os
import secrets
from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("castmetrics", appauthor=False))


class Settings(BaseSettings):
    """Runtime configuration. Every field is ``CASTMETRICS_<NAME>`` except ``DATABASE_URL``."""

    model_config = SettingsConfigDict(env_prefix="CASTMETRICS_", extra="ignore")

    # The owner connection: migrations and partition DDL. Unset means the embedded server.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "CASTMETRICS_DATABASE_URL")
    )
    # The runtime login role's connection. Unset: the app creates (or reuses) ``app_role`` on the
    # owner's server and connects as it with ``app_password``.
    app_database_url: str | None = None
    app_role: str = "castmetrics_app"
    app_password: SecretStr | None = None

    data_dir: Path = Field(default_factory=default_data_dir)
    embedded_database: str = "castmetrics"

    environment: str = "development"
    # Signs every token and derives the runtime role's password. Unset: the data directory's own key,
    # generated at random on first start (``with_secret_key``); the constant below is never used as is.
    secret_key: SecretStr = SecretStr("dev-insecure-change-me")
    public_url: str = "http://127.0.0.1:8000"

    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON when stderr is not a terminal

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    metrics_token: SecretStr | None = None
    db_pool_size: int = 10
    db_max_overflow: int = 10

    # Run the job worker inside ``serve`` (default: only on the embedded database).
    in_process_worker: bool | None = None
    # The job worker's own connections (in ``serve`` and ``castmetrics worker``), apart from the request
    # pool: background work can never take the connections requests need.
    worker_pool_size: int = Field(default=10, ge=1, le=1000)
    # A job worker that has not shown it works for this long is stalled: ``/readyz`` answers 503.
    worker_stale_seconds: float = Field(default=60.0, ge=1, le=3600)

    access_token_minutes: int = Field(default=30, ge=1, le=24 * 60)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)  # tests lower it; production keeps 12+
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    # Unset: emails are kept in the ``emails`` table and written to the log (works offline).
    smtp_url: str | None = None  # smtp://user:password@host:587 (STARTTLS) or smtps://host:465
    # Feed fetching: private, loopback and link-local addresses are refused unless allowed (on-premise).
    allow_private_fetch: bool = False
    # Workflow webhooks: the same refusal for a step's URL unless allowed (receivers on your own network,
    # for every tenant: set it only when every tenant is trusted).
    allow_private_webhooks: bool = False
    # Private webhook URLs allowed exactly as written (a JSON list), whatever the setting above: ``serve
    # --demo`` lists the demo tenant's receiver here and nothing else. From a private target a step's result
    # keeps the status only, never the answer's body.
    private_webhook_urls: list[str] = Field(default_factory=list)
    # Mount the demo's webhook receiver, POST /v1/demo/webhook/{tenant_slug}: it logs deliveries signed by
    # the tenant's workflow (``serve --demo`` turns it on, with its URL allowed, on the embedded database).
    demo_webhook_receiver: bool = False
    feed_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    mail_from: str = "Castmetrics <no-reply@castmetrics.local>"
    outbox_publish_batch: int = 500
    # Events: how many days of raw events are kept (whole day partitions are dropped).
    event_retention_days: int = Field(default=730, ge=2, le=36500)
    # On Citus: day partitions older than this many days are converted to columnar storage (the
    # partition maintenance job); at least 2, so that today's and yesterday's events always go to heap days.
    columnar_after_days: int = Field(default=7, ge=2, le=36500)
    # Event batches (up to 10,000 events) may be larger than other request bodies.
    events_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Measurement prefix: proxies whose X-Forwarded-For is believed (comma-separated CIDRs), and the
    # data-centre ranges whose requests are not downloads (a file with a CIDR per line).
    trusted_proxies: str = ""
    datacenter_ranges_file: Path | None = None
    # The prefix's tenant directory (slugs and enclosure hosts in memory) follows changes as they commit and
    # also reloads everything this often, in case a notification was missed.
    prefix_directory_refresh_seconds: float = Field(default=60.0, ge=1, le=86_400)
    # The prefix spool (requests kept on disk while the database is unreachable) stops growing here: past it
    # the oldest requests whose slug is no tenant's are dropped first, then the oldest of all, with an alert.
    prefix_spool_max_bytes: int = Field(default=1024**3, ge=64 * 1024)
    # How many events `castmetrics demo` generates when --events is not given.
    demo_events: int = Field(default=1_000_000, ge=0)
    # Seconds an analytics answer is reused (0 turns the cache off); a new batch of data always misses.
    analytics_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    analytics_cache_entries: int = Field(default=4096, ge=0, le=1_000_000)
    # Seconds a resolved principal (tenant, user, roles, permissions, API key) is reused by a process: the
    # bound within which a revocation made elsewhere takes effect here (auth/cache.py). 0 turns it off.
    principal_cache_seconds: float = Field(default=5.0, ge=0, le=5)
    # How often the API calls and logins counted in memory are written to ``user_metrics`` (auth/usage.py).
    usage_flush_seconds: float = Field(default=5.0, gt=0, le=300)
    # One rollup refresh cycle takes at most this many of one tenant's new events and requests (and at least
    # one batch); the rest waits for the next cycle, so a flood of one tenant never holds up the others.
    rollup_cycle_events: int = Field(default=50_000, ge=1, le=100_000_000)
    # Workflows: how long a worker holds an execution before another may take it over (a dead worker's
    # executions resume after this), the first retry's delay (doubling, with jitter), and how many due
    # executions a dispatch round hands to the queue, in all and per tenant.
    workflow_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    workflow_retry_base_seconds: float = Field(default=2.0, ge=0, le=600)
    workflow_dispatch_batch: int = Field(default=500, ge=1, le=10_000)
    workflow_dispatch_per_tenant: int = Field(default=200, ge=1, le=10_000)
    # Webhook steps of one tenant in flight at once, across all workers: the others wait their turn (parked,
    # holding nothing), so a tenant pointing many runs at a slow receiver delays only its own workflows.
    workflow_webhooks_per_tenant: int = Field(default=4, ge=1, le=1000)
    # Billing through Stripe: without the secret key the billing routes answer 503 (the rest works);
    # without the webhook secret the webhook does. A subscription's tier is the tier of its price id.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_price_pro: str | None = None
    stripe_price_enterprise: str | None = None
    # Where the Stripe library sends API calls (unset: Stripe's own); tests point it at a local server.
    stripe_api_base: str | None = None
    # Where Checkout and the customer portal send the user back.
    billing_return_url: str = "http://127.0.0.1:8000/"


DEV_SECRET_KEY = "dev-insecure-change-me"
SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_LENGTH = 32


class InsecureSettings(ValueError):
    """Settings that must not reach production."""


def is_development_key(settings: Settings) -> bool:
    """The public constant, or a key too short to resist guessing."""
    key = settings.secret_key.get_secret_value()
    return key == DEV_SECRET_KEY or len(key) < MIN_SECRET_KEY_LENGTH


def check_production_safety(settings: Settings) -> None:
    """Outside development the secret key must be set and long: it signs every token and derives the
    runtime role's password."""
    if settings.environment != "development" and is_development_key(settings):
        raise InsecureSettings(
            f"CASTMETRICS_SECRET_KEY must be set to a random value of at least {MIN_SECRET_KEY_LENGTH} characters "
            f"when CASTMETRICS_ENVIRONMENT is {settings.environment!r}"
        )


def check_listen_address(settings: Settings, host: str) -> None:
    """A server reachable from other machines must not sign tokens with a key anyone can know."""
    if not is_loopback(host) and is_development_key(settings):
        raise InsecureSettings(
            f"refusing to listen on {host!r} with a development secret key: set CASTMETRICS_SECRET_KEY to a "
            f"random value of at least {MIN_SECRET_KEY_LENGTH} characters (or unset it to use the data "
            "directory's generated key), or listen on 127.0.0.1"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def with_secret_key(settings: Settings) -> Settings:
    """``settings`` with a secret key: the configured one, else the data directory's own, generated at
    random on first start and kept in ``<data_dir>/secret_key`` (mode 0600), so tokens and the runtime
    role's password survive restarts while no two installations share a key."""
    if "secret_key" in settings.model_fields_set:
        return settings
    path = settings.data_dir / SECRET_KEY_FILE
    key = _read_key(path)
    if key is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: of two processes starting at once, one writes the key and the other reads it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = _read_key(path)
        else:
            key = secrets.token_urlsafe(48)
            with os.fdopen(fd, "w") as file:
                file.write(key + "\n")
    if not key:
        raise InsecureSettings(f"the secret key file {path} is empty: delete it to generate a new key")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # readable by others: anyone who reads it can sign tokens
    return settings.model_copy(update={"secret_key": SecretStr(key)})


def _read_key(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return with_secret_key(Settings())
