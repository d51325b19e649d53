"""RFC 9457 problem+json for every error the app answers, domain or HTTP, never leaking internals."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from castmetrics import errors
from castmetrics.db.errors import is_connection_error
from castmetrics.idempotency import service as idempotency

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://castmetrics.org/problems/"

_STATUS_BY_ERROR: dict[type[errors.DomainError], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Invalid: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.QuotaExceeded: 402,
    errors.RateLimited: 429,
    errors.ContentTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Unavailable: 503,
    errors.NotConfigured: 503,
    errors.InvalidSignature: 400,
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    *,
    detail: str | None = None,
    type_: str = "about:blank",
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or HTTPStatus(status).description or HTTPStatus(status).phrase,
    }
    body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def _status_for(error: errors.DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return 400


async def _domain_error(_request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, errors.DomainError)
    retry_after = exc.retry_after if isinstance(exc, errors.RateLimited | errors.Unavailable) else None
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if isinstance(exc, errors.Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return problem(
        _status_for(exc),
        detail=exc.detail,
        type_=PROBLEM_TYPE_BASE + exc.code,
        title=exc.title,
        headers=headers,
        **exc.extra,
    )


async def _http_error(_request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(exc.status_code, detail=detail, headers=dict(exc.headers or {}))


def _json_safe(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


async def _validation_error(_request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": _json_safe(list(err.get("loc", ()))), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]
    first = details[0] if details else None
    summary = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}" if first else "the request is not valid"
    return problem(
        422,
        detail=summary,
        type_=PROBLEM_TYPE_BASE + "validation",
        title="Validation failed",
        errors=details,
    )


async def _replay(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, idempotency.Replay)
    return JSONResponse(exc.body, status_code=exc.status_code, headers={"Idempotent-Replayed": "true"})


async def _data_error(_request: Request, exc: Exception) -> ProblemResponse:
    # The database refused a value the schema let through (a NUL character in text, a number out of
    # range): the client's input, so a 422 — with no SQL in the answer.
    log.info("http.data_error", error=str(getattr(exc, "orig", exc)).splitlines()[0][:200])
    return problem(
        422,
        detail="a value cannot be stored: it contains a NUL character or is out of range",
        type_=PROBLEM_TYPE_BASE + "validation",
        title="Validation failed",
    )


async def _database_unreachable(request: Request, exc: Exception) -> ProblemResponse:
    # The database is down or unreachable: nothing was stored, and the client may retry.
    log.warning("http.database_unavailable", path=request.url.path, error=str(exc).splitlines()[0][:200])
    return await _domain_error(
        request, errors.Unavailable("the database is unavailable; nothing was stored, retry later")
    )


async def _server_error(request: Request, exc: Exception) -> ProblemResponse:
    if is_connection_error(exc):
        return await _database_unreachable(request, exc)
    # The client learns only that it failed and which request id to quote; the log has the rest.
    log.exception("http.unhandled_error", path=request.url.path, exc_info=exc)
    # This handler runs outside our middleware (Starlette's outermost layer): echo the id ourselves.
    request_id = getattr(request.state, "request_id", None)
    return problem(
        500,
        detail="An internal error occurred; quote the X-Request-ID header when reporting it.",
        headers={"X-Request-ID": request_id} if request_id else None,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(OperationalError, _server_error)
    app.add_exception_handler(InterfaceError, _server_error)
    app.add_exception_handler(idempotency.Replay, _replay)
    app.add_exception_handler(Exception, _server_error)
