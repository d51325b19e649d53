"""Structured logging (structlog) and Prometheus metrics shared by every entry point."""

from __future__ import annotations

import logging
import sys

import structlog
from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("castmetrics_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "castmetrics_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
JOBS_PUBLISHED = Counter("castmetrics_outbox_published_total", "Outbox events published")
PREFIX_REDIRECTS = Counter("castmetrics_prefix_redirects_total", "Measurement prefix requests answered")
PREFIX_RECORDED = Counter("castmetrics_prefix_recorded_total", "Prefix requests stored in the database")
PREFIX_SPOOLED = Counter("castmetrics_prefix_spooled_total", "Prefix requests written to the local spool")
PREFIX_UNKNOWN_TENANT = Counter(
    "castmetrics_prefix_unknown_tenant_total", "Prefix requests for a slug that is no (active) tenant"
)
PREFIX_REFUSED = Counter(
    "castmetrics_prefix_refused_total",
    "Prefix requests refused: malformed, unknown_tenant (a slug that is no tenant's) or foreign_host (a browser "
    "navigation to a host none of the tenant's episodes use)",
    ["reason"],
)
PREFIX_DIRECTORY_LISTENING = Gauge(
    "castmetrics_prefix_directory_listening",
    "1 while the prefix's tenant directory follows the database (0: it answers from what it last knew)",
)
PREFIX_SPOOL_DROPPED = Counter(
    "castmetrics_prefix_spool_dropped_total",
    "Spooled prefix requests dropped because the spool reached CASTMETRICS_PREFIX_SPOOL_MAX_BYTES, by whether "
    "their slug was a tenant's",
    ["tenant"],
)
# The job worker of this process (``serve``'s in-process one or ``castmetrics worker``): NaN while none runs.
WORKER_HEARTBEAT_AGE = Gauge(
    "castmetrics_worker_heartbeat_age_seconds", "Seconds since this process's job worker last showed it works"
)
WORKER_HEARTBEAT_AGE.set(float("nan"))
WORKER_RESTARTS = Counter(
    "castmetrics_worker_restarts_total", "Times this process's job worker was restarted after it stopped or failed"
)

_configured = False


def _ensure_context_keys(
    _logger: object, _name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    # Every line carries both keys, null outside a request or job, so log queries never miss one.
    event_dict.setdefault("request_id", None)
    event_dict.setdefault("tenant_id", None)
    return event_dict


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Route structlog and the standard library (uvicorn, alembic) through one renderer.

    JSON lines when stderr is not a terminal (or ``json=True``), readable console output otherwise.
    """
    global _configured
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _ensure_context_keys,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "procrastinate", "alembic"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our middleware writes one access line per request, with request and tenant ids.
    logging.getLogger("uvicorn.access").disabled = True
    # procrastinate logs every job start and end at INFO: the periodic outbox job would flood the log.
    logging.getLogger("procrastinate").setLevel(max(logging.WARNING, root.level))
    _configured = True
