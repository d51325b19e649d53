"""Sponsors and campaigns: the lists, a sponsor with its campaigns and podcast matches, and a campaign
with its stage, its bookings' delivery pacing and its attribution under the five models.

Every number comes from the public API in process (``web/api.py``), and the one change made here, a
campaign's stage, is posted to ``POST /v1/campaigns/{id}/transition``: the API decides who may make it
(``campaigns:update``) and which stages are legal, so the page only mirrors those answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import date
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from castmetrics import money
from castmetrics.web.api import Api, ApiError
from castmetrics.web.charts import Series, line_chart
from castmetrics.web.pages.common import svg, uuid_or_404
from castmetrics.web.session import PageError, SignedIn, Viewer, checked_form, field_of, page_error
from castmetrics.web.templating import redirect, render

router = APIRouter()
T = TypeVar("T")

STAGES = ("draft", "active", "paused", "completed", "cancelled")
MODELS = (
    ("first_touch", "First touch"),
    ("last_touch", "Last touch"),
    ("linear", "Linear"),
    ("time_decay", "Time decay"),
    ("position_based", "Position based"),
)
MODEL_NAMES = frozenset(name for name, _ in MODELS)
DEFAULT_MODEL = "last_touch"
# The permission of POST /v1/campaigns/{id}/transition (sponsorship/router.py): the stage form's.
TRANSITION_PERMISSION = "campaigns:update"
# The campaigns list shows pacing for this many running (active or paused) campaigns at most.
PACING_LIMIT = 25
MATCHES_LIMIT = 20


# --- helpers -----------------------------------------------------------------------------------------


async def _allowed(call: Awaitable[T]) -> T | None:
    """The answer of a part of a page the viewer may not be allowed to see: None on a 403."""
    try:
        return await call
    except ApiError as exc:
        if exc.status == 403:
            return None
        raise


async def _summary(call: Awaitable[T]) -> T | None:
    """A list's extra figure: left out whatever went wrong (a campaign deleted meanwhile, a 403)."""
    try:
        return await call
    except ApiError:
        return None


async def _nothing() -> None:
    return None


def _model_of(value: str | None) -> str:
    return value if value in MODEL_NAMES else DEFAULT_MODEL


def _share(part: float | None, whole: float | None) -> float:
    """``part`` as a percentage of ``whole``, kept inside the bar (0 to 100)."""
    if not whole or part is None:
        return 0.0
    return max(0.0, min(100.0, 100.0 * float(part) / float(whole)))


def _amount(minor: int, currency: str) -> str:
    places = money.exponent(currency)
    return f"{money.to_major(minor, currency):,.{places}f} {currency}"


def _pricing(pricing_model: str, currency: str, booking: dict[str, Any] | None) -> str:
    if booking is None:  # the viewer may not read bookings: the model alone
        return "CPM" if pricing_model == "cpm" else "Flat fee"
    rate = _amount(int(booking["rate_minor"]), currency)
    return f"{rate} CPM" if pricing_model == "cpm" else f"{rate} flat"


def _pacing_rows(
    pacing: dict[str, Any], bookings: list[dict[str, Any]] | None, places: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """One row per live booking of the pacing answer, with where it runs and its price."""
    by_id = {item["id"]: item for item in bookings or []}
    where = {item["booking_id"]: item for item in places or []}
    rows = []
    for item in pacing["bookings"]:
        place = where.get(item["booking_id"], {})
        rows.append(
            {
                **item,
                "podcast_name": place.get("podcast_name"),
                "episode_title": place.get("episode_title"),
                "pricing": _pricing(item["pricing_model"], item["currency"], by_id.get(item["booking_id"])),
                "fill": _share(item["delivered"], item["booked"]),
                "mark": _share(item["expected_to_date"], item["booked"]),
            }
        )
    return rows


def _days_chart(answer: dict[str, Any]) -> Any:
    points = [(date.fromisoformat(str(d["day"])[:10]), d["conversions"]) for d in answer.get("days", [])]
    return svg(line_chart([Series("Conversions", points)], title="Conversions per day", width=1200, height=220))


def _models(compare: dict[str, Any] | None, chosen: str) -> list[dict[str, Any]]:
    by_name = {item["model"]: item for item in (compare or {}).get("models", [])}
    return [
        {"name": name, "label": label, "answer": by_name.get(name), "selected": name == chosen}
        for name, label in MODELS
    ]


async def _sponsor_names(api: Api) -> dict[str, str] | None:
    sponsors = await _allowed(api.all_items("/v1/sponsors"))
    return None if sponsors is None else {item["id"]: item["name"] for item in sponsors}


# --- sponsors ----------------------------------------------------------------------------------------


@router.get("/sponsors")
async def sponsors(request: Request, viewer: SignedIn) -> Response:
    try:
        listed, campaigns = await asyncio.gather(
            viewer.api.all_items("/v1/sponsors"), _allowed(viewer.api.all_items("/v1/campaigns"))
        )
    except ApiError as exc:
        raise page_error(exc) from None
    counts: dict[str, int] | None = None
    if campaigns is not None:
        counts = {}
        for campaign in campaigns:
            if campaign["sponsor_id"]:
                counts[campaign["sponsor_id"]] = counts.get(campaign["sponsor_id"], 0) + 1
    context = {"title": "Sponsors", "sponsors": listed, "counts": counts}
    return render(request, "sponsors.html", context, viewer=viewer)


@router.get("/sponsors/{sponsor_id}")
async def sponsor(request: Request, sponsor_id: str, viewer: SignedIn) -> Response:
    sid = uuid_or_404(sponsor_id, "sponsor")
    api = viewer.api
    try:
        found, campaigns, matches = await asyncio.gather(
            api.get(f"/v1/sponsors/{sid}"),
            _allowed(api.all_items("/v1/campaigns", sponsor_id=sid)),
            _allowed(api.get(f"/v1/sponsors/{sid}/matches", limit=MATCHES_LIMIT)),
        )
    except ApiError as exc:
        raise page_error(exc) from None
    context = {"title": found["name"], "sponsor": found, "campaigns": campaigns, "matches": matches}
    return render(request, "sponsor.html", context, viewer=viewer)


# --- campaigns ---------------------------------------------------------------------------------------


@router.get("/campaigns")
async def campaigns(request: Request, viewer: SignedIn, stage: str | None = None) -> Response:
    chosen = stage if stage in STAGES else None
    api = viewer.api
    try:
        listed, names = await asyncio.gather(api.all_items("/v1/campaigns", stage=chosen), _sponsor_names(api))
        running = [c["id"] for c in listed if c["stage"] in ("active", "paused")][:PACING_LIMIT]
        paces = await asyncio.gather(*(_summary(api.get(f"/v1/campaigns/{cid}/pacing")) for cid in running))
    except ApiError as exc:
        raise page_error(exc) from None
    pacing = {cid: answer for cid, answer in zip(running, paces, strict=True) if answer is not None}
    context = {
        "title": "Campaigns",
        "campaigns": listed,
        "stages": STAGES,
        "stage": chosen,
        "names": names or {},
        "pacing": pacing,
        "share": _share,
    }
    return render(request, "campaigns.html", context, viewer=viewer)


async def _campaign_context(viewer: Viewer, campaign_id: str, model: str) -> dict[str, Any]:
    """Everything the campaign page shows: the campaign first (so an unknown one is a single 404),
    then its pacing, bookings, places, attribution, history and sponsor at once."""
    api = viewer.api
    base = f"/v1/campaigns/{campaign_id}"
    try:
        campaign = await api.get(base)
        sponsor_id = campaign.get("sponsor_id")
        pacing, bookings, places, compare, history, sponsor = await asyncio.gather(
            api.get(f"{base}/pacing"),
            _allowed(api.all_items(f"{base}/bookings")),
            _allowed(api.all_items(f"{base}/episodes")),
            _allowed(api.get("/v1/attribution/compare", campaign_id=campaign_id)),
            _allowed(api.get(f"{base}/history", limit=10)),
            _allowed(api.get(f"/v1/sponsors/{sponsor_id}")) if sponsor_id else _nothing(),
        )
    except ApiError as exc:
        raise page_error(exc) from None
    models = _models(compare, model)
    detail = next((m["answer"] for m in models if m["selected"]), None)
    return {
        "title": campaign["name"],
        "campaign": campaign,
        "sponsor": sponsor,
        "pacing": pacing,
        "rows": _pacing_rows(pacing, bookings, places),
        "total_fill": _share(pacing["delivered"], pacing["booked"]),
        "total_mark": _share(pacing["expected_to_date"], pacing["booked"]),
        "compare": compare,
        "models": models,
        "model": model,
        "detail": detail,
        "days_chart": _days_chart(detail) if detail else None,
        "history": history["items"] if history is not None else None,
        "can_change_stage": viewer.can(TRANSITION_PERMISSION),
        "stage_choice": None,
        "reason": "",
        "stage_error": None,
        "changed": False,
    }


@router.get("/campaigns/{campaign_id}")
async def campaign(request: Request, campaign_id: str, viewer: SignedIn, model: str | None = None) -> Response:
    cid = uuid_or_404(campaign_id, "campaign")
    context = await _campaign_context(viewer, cid, _model_of(model))
    context["changed"] = request.query_params.get("changed") == "1"
    return render(request, "campaign.html", context, viewer=viewer)


REPORT_FORMATS = ("pdf", "csv", "json")


@router.get("/campaigns/{campaign_id}/report")
async def report(request: Request, campaign_id: str, viewer: SignedIn, format: str = "pdf") -> Response:
    """The campaign's sponsor report, as the API's report route answers it, with the session."""
    cid = uuid_or_404(campaign_id, "campaign")
    if format not in REPORT_FORMATS:
        raise PageError(404, "Not found", f"Reports come as {', '.join(REPORT_FORMATS)}.")
    answer = await viewer.api.download(f"/v1/campaigns/{cid}/report", format=format)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if "content-disposition" in answer.headers:
        headers["Content-Disposition"] = answer.headers["content-disposition"]
    return Response(answer.content, media_type=answer.headers.get("content-type"), headers=headers)


@router.post("/campaigns/{campaign_id}/stage")
async def change_stage(request: Request, campaign_id: str, viewer: SignedIn) -> Response:
    """Posts the chosen stage to the API's transition route: the API refuses a viewer (403 page) and
    an illegal change (409, shown on the campaign page with what was chosen)."""
    form = await checked_form(request)
    cid = uuid_or_404(campaign_id, "campaign")
    stage, reason, model = field_of(form, "stage"), field_of(form, "reason"), _model_of(field_of(form, "model"))
    body: dict[str, str] = {"stage": stage}
    if reason:
        body["reason"] = reason
    try:
        await viewer.api.post(f"/v1/campaigns/{cid}/transition", body)
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise page_error(exc) from None
        context = await _campaign_context(viewer, cid, model)
        context.update(stage_error=exc.detail, stage_choice=stage, reason=reason)
        return render(request, "campaign.html", context, viewer=viewer, status=exc.status)
    query = {"changed": "1"} | ({"model": model} if model != DEFAULT_MODEL else {})
    return redirect(request, f"/campaigns/{cid}?{urlencode(query)}")
