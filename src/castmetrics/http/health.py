"""Liveness, readiness and Prometheus metrics: the operator's routes, outside ``/v1``."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from castmetrics.errors import Unauthorized
from castmetrics.http.problems import problem
from castmetrics.jobs.heartbeat import Heartbeat

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


@router.get("/healthz", summary="Liveness", response_model=Health)
async def healthz() -> Health:
    """Answers 200 while the process serves requests; touches nothing else."""
    return Health(status="ok")


class Readiness(BaseModel):
    status: str
    worker_heartbeat_age_seconds: float | None = Field(
        default=None,
        description="Seconds since this process's job worker last showed it works (only when one runs here).",
    )


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={
        503: {
            "description": "The database does not answer, or this process's job worker is stalled",
            "content": {"application/problem+json": {}},
        }
    },
)
async def readyz(request: Request) -> Readiness | Response:
    """Answers 200 when the database answers a query as the runtime role and, when this process runs
    the job worker, the worker showed it works within ``CASTMETRICS_WORKER_STALE_SECONDS``; 503 otherwise."""
    try:
        await request.app.state.db.ping()
    except Exception:
        return problem(503, detail="the database does not answer")
    heartbeat: Heartbeat | None = request.app.state.worker_heartbeat
    if heartbeat is None:
        return Readiness(status="ready")
    age = round(heartbeat.age(), 1)
    if heartbeat.is_stale():
        return problem(
            503,
            detail=f"the job worker is stalled: no heartbeat for {age:.0f} s (limit {heartbeat.stale_after:.0f} s)",
            worker_heartbeat_age_seconds=age,
            worker_restarts=heartbeat.restarts,
        )
    return Readiness(status="ready", worker_heartbeat_age_seconds=age)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Request counts, latency histograms and the job worker's heartbeat age and restarts in the
    Prometheus text format. When
    ``CASTMETRICS_METRICS_TOKEN`` is set, a matching bearer token is required."""
    token = request.app.state.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise Unauthorized("a valid metrics token is required")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
