"""The podcast page and the episode page: what one show, or one of its episodes, did over a period.

Every figure is an answer of the analytics API for the same period the overview uses. Listener metrics are
asked in the viewer's zone; IAB listeners and the country/app/device breakdowns exist only per UTC day, so
they are asked (and labelled) in UTC. An id the tenant does not own is the API's 404, shown as a 404 page.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from castmetrics.web.charts import Series, line_chart, number
from castmetrics.web.pages.common import (
    PERIODS,
    Period,
    bars,
    days_of,
    gather_api,
    metric_map,
    period_of,
    series_chart,
    svg,
    uuid_or_404,
)
from castmetrics.web.session import SignedIn, Viewer
from castmetrics.web.templating import render

router = APIRouter()
LISTENER_METRICS = ["downloads", "plays", "completes", "unique_listeners", "listen_through_rate"]
KPI_LABELS = [
    ("downloads", "Downloads"), ("listeners", "Listeners (UTC days)"), ("plays", "Plays"),
    ("unique_listeners", "Unique listeners"), ("completes", "Completes"), ("listen_through_rate", "Listen-through"),
]  # fmt: skip
LAUNCH_WINDOWS = (1, 7, 30, 90)
LAUNCH_ROWS = 10  # episodes in the launch table; the newest LAUNCH_LINES of them are drawn
LAUNCH_LINES = 5
TOP_LIMIT = 100  # the most top-episodes answers; beyond it an episode's downloads are unknown here
BREAKDOWN_ROWS = 10


def clock(seconds: Any) -> str:
    """A duration as H:MM:SS (M:SS under an hour); ``—`` when unknown."""
    if seconds is None:
        return "—"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def web_link(url: Any) -> str | None:
    """A URL fit for an ``href``: only http(s) (a feed could carry anything)."""
    return url if isinstance(url, str) and url.lower().startswith(("https://", "http://")) else None


def _instant(value: Any) -> datetime | None:
    if not value:
        return None
    at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _short(text: str, size: int = 18) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def launch_chart(episodes: list[dict[str, Any]], average: dict[str, Any] | None, title: str) -> Markup:
    """Downloads since publication: x is the day (1, 7, 30, 90), one line per episode plus the average."""
    series = [Series(_short(item["title"]), [(n, item.get(f"day_{n}")) for n in LAUNCH_WINDOWS]) for item in episodes]
    if average is not None:
        series.append(Series("Average", [(n, average.get(f"day_{n}")) for n in LAUNCH_WINDOWS]))
    width = max(1000, 60 + 140 * len(series))  # room for the legend, one entry per line

    def day_label(x: Any) -> str:
        return f"day {number(float(x))}"

    return svg(line_chart(series, title=title, width=width, x_label=day_label))


def breakdown_bars(answer: dict[str, Any], title: str) -> tuple[Markup, list[dict[str, Any]]]:
    items = answer["items"][:BREAKDOWN_ROWS]
    return bars([(item["key"], item["downloads"] or 0) for item in items], title), items


def event_bars(answer: dict[str, Any], title: str) -> tuple[Markup, list[dict[str, Any]]]:
    items = answer["items"]
    return bars([(item["key"], item["count"] or 0) for item in items], title), items


def _analytics_calls(viewer: Viewer, base: str, period: Period) -> list[Awaitable[Any]]:
    """The calls both pages make for their scope: KPIs (listener metrics in the viewer's zone, IAB
    listeners in UTC) and the downloads and plays series."""
    zone = viewer.zone.key
    return [
        viewer.api.get(f"{base}/summary", **period.params, tz=zone, metric=LISTENER_METRICS),
        viewer.api.get(f"{base}/summary", **period.params, metric=["listeners"]),
        viewer.api.get(f"{base}/timeseries", **period.params, tz=zone, metric="downloads"),
        viewer.api.get(f"{base}/timeseries", **period.params, tz=zone, metric="plays"),
    ]


def _analytics_context(
    period: Period, zone: str, summary: Any, listeners: Any, downloads: Any, plays: Any
) -> dict[str, Any]:
    """What the podcast and episode pages show alike: the period, the KPIs and the daily chart."""
    return {
        "period": period,
        "periods": PERIODS,
        "kpi_labels": KPI_LABELS,
        "metrics": metric_map(summary) | metric_map(listeners),
        "activity_chart": series_chart(
            [("Downloads", downloads), ("Plays", plays)],
            f"Downloads and plays per day ({zone})",
            width=1200,
            height=260,
        ),
    }


def _episode_rows(episodes: list[dict[str, Any]], top: dict[str, Any]) -> list[dict[str, Any]]:
    """Every episode, newest publication first (unpublished last), with its downloads in the period."""
    downloads = {str(item["episode_id"]): item["value"] for item in top["items"]}
    # top-episodes lists only episodes with downloads; when it is full, one left out may still have some.
    absent = None if len(top["items"]) >= TOP_LIMIT else 0
    never = datetime.min.replace(tzinfo=UTC)

    def newest(episode: dict[str, Any]) -> tuple[bool, datetime, datetime]:
        published = _instant(episode.get("published_at"))
        return published is not None, published or never, _instant(episode.get("created_at")) or never

    return [
        {
            "id": episode["id"],
            "title": episode["title"],
            "published_at": episode.get("published_at"),
            "duration_seconds": episode.get("duration_seconds"),
            "duration": clock(episode.get("duration_seconds")),
            "downloads": downloads.get(str(episode["id"]), absent),
        }
        for episode in sorted(episodes, key=newest, reverse=True)
    ]


@router.get("/podcasts/{podcast_id}")
async def podcast_page(request: Request, viewer: SignedIn, podcast_id: str, days: str | None = None) -> Response:
    scope_id = uuid_or_404(podcast_id, "podcast")
    period = period_of(viewer, days_of(days))
    zone = viewer.zone.key
    base = f"/v1/analytics/podcasts/{scope_id}"
    podcast, episodes, summary, listeners, downloads, plays, launch, countries, apps, top = await gather_api(
        viewer.api.get(f"/v1/podcasts/{scope_id}"),
        viewer.api.all_items(f"/v1/podcasts/{scope_id}/episodes"),
        *_analytics_calls(viewer, base, period),
        viewer.api.get(f"{base}/launch", limit=LAUNCH_ROWS),
        # downloads per country and app exist per UTC day only (IAB): no tz
        viewer.api.get(f"{base}/breakdown", **period.params, by="country"),
        viewer.api.get(f"{base}/breakdown", **period.params, by="app"),
        viewer.api.get(f"{base}/top-episodes", **period.params, tz=zone, metric="downloads", limit=TOP_LIMIT),
    )
    countries_chart, country_items = breakdown_bars(countries, "Downloads by country (UTC days)")
    apps_chart, app_items = breakdown_bars(apps, "Downloads by app (UTC days)")
    launched = launch["episodes"]
    context = {
        "title": podcast["name"],
        "podcast": podcast,
        "feed_url": web_link(podcast.get("rss_feed_url")),
        "website_url": web_link(podcast.get("website_url")),
        **_analytics_context(period, zone, summary, listeners, downloads, plays),
        "launch": launch,
        "launch_rows": launched,
        "launch_chart": launch_chart(
            launched[:LAUNCH_LINES],
            launch["average"] if launched else None,
            "Downloads since publication: the newest episodes and the average",
        ),
        "countries_chart": countries_chart,
        "countries": country_items,
        "countries_total": len(countries["items"]),
        "apps_chart": apps_chart,
        "apps": app_items,
        "apps_total": len(apps["items"]),
        "episodes": _episode_rows(episodes, top),
        "top_full": len(top["items"]) >= TOP_LIMIT,
    }
    return render(request, "podcast.html", context, viewer=viewer)


@router.get("/episodes/{episode_id}")
async def episode_page(request: Request, viewer: SignedIn, episode_id: str, days: str | None = None) -> Response:
    scope_id = uuid_or_404(episode_id, "episode")
    period = period_of(viewer, days_of(days))
    zone = viewer.zone.key
    base = f"/v1/analytics/episodes/{scope_id}"
    episode, summary, listeners, downloads, plays, events, countries, apps, devices, launch = await gather_api(
        viewer.api.get(f"/v1/episodes/{scope_id}"),
        *_analytics_calls(viewer, base, period),
        viewer.api.get(f"{base}/breakdown", **period.params, tz=zone, by="event_type"),
        viewer.api.get(f"{base}/breakdown", **period.params, by="country"),
        viewer.api.get(f"{base}/breakdown", **period.params, by="app"),
        viewer.api.get(f"{base}/breakdown", **period.params, by="device_category"),
        viewer.api.get(f"{base}/launch"),
    )
    # The podcast's name for the link and its launch average to compare with: both need the episode first.
    podcast, podcast_launch = await gather_api(
        viewer.api.get(f"/v1/podcasts/{episode['podcast_id']}"),
        viewer.api.get(f"/v1/analytics/podcasts/{episode['podcast_id']}/launch", limit=1),
    )
    events_chart, event_items = event_bars(events, f"Listener events by type ({zone})")
    countries_chart, country_items = breakdown_bars(countries, "Downloads by country (UTC days)")
    apps_chart, app_items = breakdown_bars(apps, "Downloads by app (UTC days)")
    devices_chart, device_items = breakdown_bars(devices, "Downloads by device category (UTC days)")
    own = launch["episodes"][0] if launch["episodes"] else None
    context = {
        "title": episode["title"],
        "episode": episode,
        "duration": clock(episode.get("duration_seconds")),
        "podcast": podcast,
        **_analytics_context(period, zone, summary, listeners, downloads, plays),
        "events_chart": events_chart,
        "events": event_items,
        "countries_chart": countries_chart,
        "countries": country_items,
        "countries_total": len(countries["items"]),
        "apps_chart": apps_chart,
        "apps": app_items,
        "apps_total": len(apps["items"]),
        "devices_chart": devices_chart,
        "devices": device_items,
        "devices_total": len(devices["items"]),
        "launch": own,
        "launch_average": podcast_launch["average"],
        "windows": LAUNCH_WINDOWS,
    }
    return render(request, "episode.html", context, viewer=viewer)
