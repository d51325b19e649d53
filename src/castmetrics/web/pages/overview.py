"""The overview: what the tenant's podcasts did over a period, against the period before."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from castmetrics.web.pages.common import PERIODS, bars, days_of, gather_api, metric_map, period_of, series_chart
from castmetrics.web.session import SignedIn
from castmetrics.web.templating import render

router = APIRouter()
LISTENER_METRICS = ["downloads", "plays", "completes", "unique_listeners", "listen_through_rate"]


@router.get("/")
async def overview(request: Request, viewer: SignedIn, days: str | None = None) -> Response:
    period = period_of(viewer, days_of(days))
    zone = viewer.zone.key
    base = "/v1/analytics/tenant"
    summary, listeners, downloads, listeners_series, top, podcasts = await gather_api(
        viewer.api.get(f"{base}/summary", **period.params, tz=zone, metric=LISTENER_METRICS),
        # IAB listeners are counted per UTC day, so they are asked for (and labelled) in UTC.
        viewer.api.get(f"{base}/summary", **period.params, metric=["listeners"]),
        viewer.api.get(f"{base}/timeseries", **period.params, tz=zone, metric="downloads"),
        viewer.api.get(f"{base}/timeseries", **period.params, metric="listeners"),
        viewer.api.get(f"{base}/top-episodes", **period.params, tz=zone, metric="downloads", limit=10),
        viewer.api.all_items("/v1/podcasts"),
    )
    metrics = metric_map(summary) | metric_map(listeners)
    context = {
        "title": "Overview",
        "period": period,
        "periods": PERIODS,
        "metrics": metrics,
        "downloads_chart": series_chart([("Downloads", downloads)], f"Downloads per day ({zone})"),
        "listeners_chart": series_chart([("Listeners", listeners_series)], "Listeners per day (UTC days, IAB)"),
        "top": top["items"],
        "top_chart": bars([(item["title"], item["value"]) for item in top["items"]], "Top episodes by downloads"),
        "podcasts": podcasts,
        "welcome": request.query_params.get("welcome") == "1",
    }
    return render(request, "overview.html", context, viewer=viewer)
