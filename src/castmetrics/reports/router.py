"""Sponsor report routes: a campaign's report as JSON, CSV or PDF, its share links, and the public
report a link opens without a login."""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
import uuid
from typing import Annotated, Any

from cachetools import TTLCache
from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from castmetrics.attribution.schemas import Model
from castmetrics.auth.dependencies import requires, settings_of
from castmetrics.auth.principal import Principal
from castmetrics.errors import Invalid, RateLimited
from castmetrics.http.deps import get_database
from castmetrics.http.pagination import CursorParam, Limit, Page
from castmetrics.http.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE, ProblemResponse, problem
from castmetrics.http.timerange import parse_bound
from castmetrics.reports import render, service
from castmetrics.reports.models import ReportLink
from castmetrics.reports.schemas import ReportFormat, ReportLinkIn, ReportLinkOut, ReportOut
from castmetrics.sponsorship import service as sponsorship

router = APIRouter(prefix="/v1", tags=["reports"])

MEDIA_TYPES: dict[str, ReportFormat] = {"application/json": "json", "text/csv": "csv", "application/pdf": "pdf"}
CONTENT_TYPES: dict[ReportFormat, str] = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report: JSON, CSV or PDF (by `format`, else by `Accept`).",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
SHARED_RESPONSES: dict[int | str, dict[str, Any]] = {
    **REPORT_RESPONSES,
    410: {
        "description": "The link has expired",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
}
# A shared report is one sponsor's private numbers behind a bearer URL: never cached by anyone on the
# way, never indexed, and the URL never sent on as a Referer.
PRIVATE_HEADERS = {"Cache-Control": "private, no-store", "Vary": "Accept"}
SHARED_HEADERS = {**PRIVATE_HEADERS, "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}
# A shared link needs no login, and a report (a PDF most of all) is work: each link opens at most this
# many reports a minute in each server process; more answers 429 with Retry-After.
SHARED_PER_MINUTE = 30
_shared_uses: TTLCache[tuple[str, int], int] = TTLCache(maxsize=50_000, ttl=120)


def count_shared_use(token: str, now: float | None = None) -> None:
    """Count one opening of a shared link; ``RateLimited`` past the minute's allowance."""
    now = time.time() if now is None else now
    key = (hashlib.sha256(token.encode()).hexdigest(), int(now // 60))
    used = _shared_uses.get(key, 0) + 1
    _shared_uses[key] = used
    if used > SHARED_PER_MINUTE:
        raise RateLimited(
            f"this report link was opened more than {SHARED_PER_MINUTE} times this minute; try again shortly",
            retry_after=max(1, 60 - int(now % 60)),
        )


FormatParam = Annotated[
    ReportFormat | None,
    Query(alias="format", description="`json`, `csv` or `pdf`; without it the `Accept` header chooses (JSON default)."),
]
ModelParam = Annotated[Model, Query(description="The attribution model shown in full (default `last_touch`).")]
LookbackParam = Annotated[
    int | None,
    Query(ge=1, le=365, description="Days before a conversion its touchpoints count; default the campaign's own."),
]
From = Annotated[
    str | None, Query(alias="from", max_length=40, description="Conversions from: a date or a zoned datetime.")
]
To = Annotated[str | None, Query(max_length=40, description="Conversions to: a date (included) or a zoned datetime.")]
Token = Annotated[str, Path(max_length=4096, description="The signed token of a report link.")]


def negotiate(report_format: ReportFormat | None, accept: str) -> ReportFormat:
    """``format`` when given; else the supported media type the ``Accept`` header ranks highest (the
    first listed among equals); else JSON."""
    if report_format is not None:
        return report_format
    chosen: ReportFormat = "json"
    best = 0.0
    for part in accept.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        found = MEDIA_TYPES.get(media.lower())
        if found is not None and quality > best:
            chosen, best = found, quality
    return chosen


def _filename(report: ReportOut, extension: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", report.campaign.name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60] or "campaign"
    return f"castmetrics-report-{slug}-{report.as_of:%Y-%m-%d}.{extension}"


async def _answer(report: ReportOut, report_format: ReportFormat, headers: dict[str, str]) -> Response:
    if report_format == "json":
        return JSONResponse(report.model_dump(mode="json", by_alias=True), headers=headers)
    if report_format == "csv":
        body = render.report_csv(report)
    else:  # rendering a long report takes a while: off the event loop
        body = await run_in_threadpool(render.report_pdf, report)
    disposition = {"Content-Disposition": f'attachment; filename="{_filename(report, report_format)}"'}
    return Response(body, media_type=CONTENT_TYPES[report_format], headers={**headers, **disposition})


def _link_out(link: ReportLink, *, token: str | None = None, url: str | None = None) -> ReportLinkOut:
    out = ReportLinkOut.model_validate(link)
    out.token, out.url = token, url
    return out


@router.get(
    "/campaigns/{campaign_id}/report",
    response_model=ReportOut,
    responses=REPORT_RESPONSES,
    summary="A campaign's sponsor report (JSON, CSV or PDF)",
)
async def campaign_report(
    campaign_id: uuid.UUID,
    request: Request,
    principal: Annotated[Principal, requires("attribution", "read")],
    report_format: FormatParam = None,
    model: ModelParam = "last_touch",
    lookback_days: LookbackParam = None,
    start: From = None,
    to: To = None,
) -> Any:
    """One campaign's delivery, pacing and attribution: the pacing route's answer, the five models
    compared (as `GET /v1/attribution/compare`), `model` in full, and a daily table of delivered and
    expected (even delivery) impressions with the model's conversions, revenue and spend. `from` /
    `to` bound the conversions counted. `format=csv` or `pdf` (or `Accept: text/csv` /
    `application/pdf`) answers a download; docs/api.md describes the CSV layout."""
    start_at = parse_bound(start, name="from", end=False)
    end_at = parse_bound(to, name="to", end=True)
    if start_at is not None and end_at is not None and start_at >= end_at:
        raise Invalid("from must be before to", parameter="from")
    campaign = await sponsorship.get_campaign(principal.session, campaign_id)
    report = await service.build_report(
        principal.session, campaign, model=model, lookback_days=lookback_days, start=start_at, end=end_at
    )
    return await _answer(report, negotiate(report_format, request.headers.get("accept", "")), PRIVATE_HEADERS)


@router.post(
    "/campaigns/{campaign_id}/report-links",
    status_code=status.HTTP_201_CREATED,
    response_model=ReportLinkOut,
    summary="Share a campaign's report by a signed, expiring link",
)
async def create_report_link(
    campaign_id: uuid.UUID,
    body: ReportLinkIn,
    request: Request,
    principal: Annotated[Principal, requires("campaigns", "update")],
) -> ReportLinkOut:
    """A link anyone holding it can open without a login (`GET /v1/reports/{token}`), showing the
    report with the chosen `model` and `lookback_days`, for `expires_in_days` (1–90, default 14)
    unless revoked first. `url` and `token` are answered only here: keep them."""
    settings = settings_of(request)
    campaign = await sponsorship.get_campaign(principal.session, campaign_id)
    link, token = await service.create_link(
        principal.session, settings.secret_key.get_secret_value(), actor=principal.actor,
        created_by=principal.user.id, campaign=campaign, data=body,
    )  # fmt: skip
    url = f"{settings.public_url.rstrip('/')}/v1/reports/{token}"
    return _link_out(link, token=token, url=url)


@router.get(
    "/campaigns/{campaign_id}/report-links", response_model=Page[ReportLinkOut], summary="A campaign's report links"
)
async def list_report_links(
    campaign_id: uuid.UUID,
    principal: Annotated[Principal, requires("campaigns", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
) -> Page[ReportLinkOut]:
    """The campaign's report links, newest first, with their expiry and revocation (never their token)."""
    await sponsorship.get_campaign(principal.session, campaign_id)
    links, next_cursor = await service.list_links(principal.session, campaign_id, limit=limit, cursor=cursor)
    return Page(items=[_link_out(link) for link in links], next_cursor=next_cursor)


@router.delete(
    "/campaigns/{campaign_id}/report-links/{link_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a report link",
)
async def revoke_report_link(
    campaign_id: uuid.UUID, link_id: uuid.UUID, principal: Annotated[Principal, requires("campaigns", "update")]
) -> Response:
    """The link stops working at once; revoking it again changes nothing."""
    await sponsorship.get_campaign(principal.session, campaign_id)
    await service.revoke_link(principal.session, principal.actor, campaign_id, link_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/reports/{token}",
    response_model=ReportOut,
    responses=SHARED_RESPONSES,
    summary="A shared sponsor report (no login)",
)
async def shared_report(token: Token, request: Request, report_format: FormatParam = None) -> Any:
    """The report a link opens, with the link's model and lookback, for anyone holding the link:
    public, no credentials. A bad or tampered token, or a revoked link, answers 404; an expired link
    410. Never cached (`Cache-Control: private, no-store`) nor indexed (`X-Robots-Tag: noindex`)."""
    count_shared_use(token)
    secret = settings_of(request).secret_key.get_secret_value()
    try:
        report = await service.shared_report(get_database(request), secret, token)
    except service.LinkExpired as exc:
        return _gone(exc)
    return await _answer(report, negotiate(report_format, request.headers.get("accept", "")), SHARED_HEADERS)


def _gone(exc: service.LinkExpired) -> ProblemResponse:
    return problem(
        status.HTTP_410_GONE, detail=exc.detail, type_=PROBLEM_TYPE_BASE + exc.code, title=exc.title,
        headers=SHARED_HEADERS,
    )  # fmt: skip
