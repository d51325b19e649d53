"""Liveness, readiness and Prometheus metrics: the operator's routes, outside ``/v1``."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from castmetrics.errors import Unauthorized
from castmetrics.http.problems import problem

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


@router.get("/healthz", summary="Liveness", response_model=Health)
async def healthz() -> Health:
    """Answers 200 while the process serves requests; touches nothing else."""
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Health,
    responses={503: {"description": "The database does not answer", "content": {"application/problem+json": {}}}},
)
async def readyz(request: Request) -> Health | Response:
    """Answers 200 when the database answers a query as the runtime role, 503 otherwise."""
    try:
        await request.app.state.db.ping()
    except Exception:
        return problem(503, detail="the database does not answer")
    return Health(status="ready")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Request counts and latency histograms in the Prometheus text format. When
    ``CASTMETRICS_METRICS_TOKEN`` is set, a matching bearer token is required."""
    token = request.app.state.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise Unauthorized("a valid metrics token is required")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
