"""The podcast and episode pages: they show the API's own numbers for the period, and nothing of another tenant."""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement.prefix import Buffer
from castmetrics.measurement.recorder import Recorder
from castmetrics.web.pages.podcasts import _episode_rows, clock, web_link
from tests.factories.analytics import add_traffic
from tests.factories.catalog import publish
from tests.factories.measurement import Show, make_show

PARIS = "Europe/Paris"
PERIOD = re.compile(r'<span class="muted">(\d{4}-\d{2}-\d{2}) – (\d{4}-\d{2}-\d{2})</span>')


@dataclass
class Aired:
    show: Show
    published: dict[str, datetime]  # episode id → publication; the last episode is never published


@pytest.fixture
def recorder(settings: Settings, db: Database, tmp_path: Path) -> Recorder:
    return Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())


async def air(make_team, client: httpx.AsyncClient, owner_db: Database, recorder: Recorder, seed: int) -> Aired:  # type: ignore[no-untyped-def]
    """A show of three episodes (two published), with downloads and listener events over ten days."""
    show = await make_show(client, await make_team("pro"), owner_db, episodes=3)
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in range(10)]
    published = {
        show.episode_ids[0]: datetime.combine(days[-1], time(9, 40), tzinfo=UTC),
        show.episode_ids[1]: datetime.combine(days[4], time(17, 5), tzinfo=UTC),
    }
    for episode, at in published.items():
        await publish(owner_db, episode, at)
    await add_traffic(client, show, recorder, days, random.Random(seed), count=200)
    return Aired(show, published)


@pytest.fixture
async def aired(make_team, client: httpx.AsyncClient, owner_db: Database, recorder: Recorder) -> Aired:  # type: ignore[no-untyped-def]
    return await air(make_team, client, owner_db, recorder, seed=7)


# --- reading pages --------------------------------------------------------------------------------


def period_of(html: str) -> dict[str, str]:
    found = PERIOD.search(html)
    assert found, "the page shows no period"
    return {"from": found.group(1), "to": found.group(2)}


def kpi(html: str, metric: str) -> str:
    found = re.search(rf'data-metric="{metric}">\s*<dt>.*?</dt>\s*<dd><span class="value" data-value="([^"]*)"', html)
    assert found, f"no KPI {metric}"
    return found.group(1)


def table(html: str, testid: str) -> str:
    found = re.search(rf'<table data-testid="{testid}">(.*?)</table>', html, re.S)
    assert found, f"no table {testid}"
    return found.group(1)


def rows(fragment: str) -> dict[str, list[str]]:
    """Each ``data-episode``/``data-window`` row of a table: its cells' raw ``data-value``s, in order."""
    found = re.findall(r'<tr data-(?:episode|window)="([^"]+)">(.*?)</tr>', fragment, re.S)
    return {key: re.findall(r'data-value="([^"]*)"', body) for key, body in found}


def same_number(shown: str, answered: Any) -> bool:
    return float(shown) == float(answered) if answered is not None else shown == ""


async def api(client: httpx.AsyncClient, show: Show, path: str, **params: Any) -> Any:
    response = await client.get(f"/v1/analytics/{path}", params=params, headers=show.team.auth("viewer"))
    assert response.status_code == 200, response.text
    return response.json()


def metrics(summary: dict[str, Any]) -> dict[str, Any]:
    return {item["metric"]: item["value"] for item in summary["metrics"]}


# --- the podcast page -----------------------------------------------------------------------------


async def test_the_podcast_page_shows_the_apis_numbers(client: httpx.AsyncClient, pages, aired: Aired) -> None:  # type: ignore[no-untyped-def]
    show = aired.show
    http = await pages(show.team, "viewer", tz=PARIS)
    page = await http.get(f"/podcasts/{show.podcast_id}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "<h1>Measured</h1>" in html
    period = period_of(html)
    today = datetime.now(ZoneInfo(PARIS)).date()
    assert date.fromisoformat(period["to"]) in (today, today - timedelta(days=1))  # the default 30 days
    assert (date.fromisoformat(period["to"]) - date.fromisoformat(period["from"])).days == 29
    scope = f"podcasts/{show.podcast_id}"

    summary = metrics(await api(client, show, f"{scope}/summary", **period, tz=PARIS))
    listeners = metrics(await api(client, show, f"{scope}/summary", **period, metric="listeners"))
    assert summary["downloads"] > 0 and summary["plays"] > 0
    for metric in ("downloads", "plays", "completes", "unique_listeners"):
        assert same_number(kpi(html, metric), summary[metric]), metric
    assert same_number(kpi(html, "listeners"), listeners["listeners"])

    top = await api(client, show, f"{scope}/top-episodes", **period, tz=PARIS, metric="downloads", limit=100)
    downloads = {item["episode_id"]: item["value"] for item in top["items"]}
    episodes = rows(table(html, "episodes"))
    newest_first = [show.episode_ids[1], show.episode_ids[0], show.episode_ids[2]]  # the unpublished one last
    assert list(episodes) == newest_first
    for episode_id, cells in episodes.items():
        duration, shown = cells
        assert duration == "3600"
        assert float(shown) == downloads.get(episode_id, 0)
    assert sum(float(cells[1]) for cells in episodes.values()) == summary["downloads"]
    first = aired.published[show.episode_ids[0]].astimezone(ZoneInfo(PARIS)).strftime("%Y-%m-%d %H:%M")
    assert first in html and f'href="/episodes/{show.episode_ids[0]}"' in html
    assert "1:00:00" in html

    launch = await api(client, show, f"{scope}/launch", limit=10)
    curves = rows(table(html, "launch"))
    assert list(curves) == [*(item["episode_id"] for item in launch["episodes"]), "average"]
    assert len(launch["episodes"]) == 2
    for item in launch["episodes"]:
        assert all(
            same_number(v, item[f"day_{n}"]) for v, n in zip(curves[item["episode_id"]], (1, 7, 30, 90), strict=True)
        )
    assert all(
        same_number(v, launch["average"][f"day_{n}"]) for v, n in zip(curves["average"], (1, 7, 30, 90), strict=True)
    )
    assert 'aria-label="Downloads since publication' in html

    countries = await api(client, show, f"{scope}/breakdown", **period, by="country")
    assert 'data-testid="countries"' in html and 'data-testid="apps"' in html
    if countries["items"]:
        key = countries["items"][0]
        assert (
            f'<tr data-key="{key["key"]}"><td>{key["key"]}</td><td class="num" data-value="{key["downloads"]}">' in html
        )
    assert "Downloads by app (UTC days)" in html
    assert '<th scope="col">' in html and "<th>" not in html


async def test_the_period_changes_the_numbers_to_the_apis_for_it(client, pages, aired: Aired) -> None:  # type: ignore[no-untyped-def]
    show = aired.show
    http = await pages(show.team, "viewer")
    page = await http.get(f"/podcasts/{show.podcast_id}", params={"days": "7"})
    assert page.status_code == 200
    period = period_of(page.text)
    assert (date.fromisoformat(period["to"]) - date.fromisoformat(period["from"])).days == 6
    summary = metrics(await api(client, show, f"podcasts/{show.podcast_id}/summary", **period, tz="UTC"))
    assert same_number(kpi(page.text, "downloads"), summary["downloads"])
    assert same_number(kpi(page.text, "plays"), summary["plays"])
    # a period that is not offered, or not a number, falls back to the default
    odd = await http.get(f"/podcasts/{show.podcast_id}", params={"days": "abc"})
    assert odd.status_code == 200 and '<option value="30" selected>' in odd.text


# --- the episode page -----------------------------------------------------------------------------


async def test_the_episode_page_shows_the_apis_numbers(client: httpx.AsyncClient, pages, aired: Aired) -> None:  # type: ignore[no-untyped-def]
    show = aired.show
    episode_id = show.episode_ids[0]
    http = await pages(show.team, "viewer", tz=PARIS)
    page = await http.get(f"/episodes/{episode_id}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "<h1>E0</h1>" in html
    assert f'<a href="/podcasts/{show.podcast_id}" data-testid="podcast-link">Measured</a>' in html
    assert aired.published[episode_id].astimezone(ZoneInfo(PARIS)).strftime("%Y-%m-%d %H:%M") in html
    assert '<dd data-value="3600">1:00:00</dd>' in html
    period = period_of(html)
    scope = f"episodes/{episode_id}"

    summary = metrics(await api(client, show, f"{scope}/summary", **period, tz=PARIS))
    assert summary["downloads"] > 0
    for metric in ("downloads", "plays", "completes", "unique_listeners"):
        assert same_number(kpi(html, metric), summary[metric]), metric

    events = await api(client, show, f"{scope}/breakdown", **period, tz=PARIS, by="event_type")
    assert events["items"]
    for item in events["items"]:
        assert (
            f'<tr data-key="{item["key"]}"><td>{item["key"]}</td><td class="num" data-value="{item["count"]}">' in html
        )
    for testid in ("countries", "apps", "devices", "events"):
        assert f'data-testid="{testid}"' in html
    assert "Downloads by device category (UTC days)" in html

    launch = (await api(client, show, f"{scope}/launch"))["episodes"][0]
    average = (await api(client, show, f"podcasts/{show.podcast_id}/launch"))["average"]
    windows = rows(table(html, "launch"))
    assert list(windows) == ["1", "7", "30", "90"]
    for n, (own, mean) in windows.items():
        assert same_number(own, launch[f"day_{n}"]) and same_number(mean, average[f"day_{n}"])
    assert windows["90"][0] == ""  # ten days after publication, the 90-day window is still open


async def test_an_unpublished_episode_has_no_launch_numbers(pages, aired: Aired) -> None:  # type: ignore[no-untyped-def]
    http = await pages(aired.show.team, "viewer")
    page = await http.get(f"/episodes/{aired.show.episode_ids[2]}")
    assert page.status_code == 200
    assert "Not published" in page.text and 'data-testid="launch"' not in page.text
    assert "Launch numbers appear once the episode is published." in page.text


# --- what may not be seen -------------------------------------------------------------------------


async def test_another_tenants_podcast_and_episode_are_not_found(  # type: ignore[no-untyped-def]
    client: httpx.AsyncClient, make_team, owner_db: Database, pages, aired: Aired
) -> None:
    theirs = await make_show(client, await make_team("pro"), owner_db, episodes=1)
    http = await pages(aired.show.team, "viewer")
    for path in (
        f"/podcasts/{theirs.podcast_id}",
        f"/episodes/{theirs.episode_ids[0]}",
        f"/podcasts/{uuid.uuid4()}",
        f"/episodes/{uuid.uuid4()}",
    ):
        page = await http.get(path)
        assert page.status_code == 404, path
        assert "Not found" in page.text and 'data-status="404"' in page.text
        assert "Measured" not in page.text and "E0" not in page.text
    # the API agrees: the same ids are 404 for this team's token
    podcast = await client.get(f"/v1/podcasts/{theirs.podcast_id}", headers=aired.show.team.auth("viewer"))
    assert podcast.status_code == 404


@pytest.mark.parametrize("path", ["/podcasts/not-a-uuid", "/episodes/12345", "/podcasts/%27%3B--", "/episodes/ "])
async def test_a_nonsense_id_is_not_found(pages, make_team, path: str) -> None:  # type: ignore[no-untyped-def]
    http = await pages(await make_team(), "viewer")
    page = await http.get(path)
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"] and "Not found" in page.text


async def test_without_a_session_the_pages_lead_to_the_login(client: httpx.AsyncClient) -> None:
    podcast_id, episode_id = uuid.uuid4(), uuid.uuid4()
    podcast = await client.get(f"/podcasts/{podcast_id}?days=7")
    assert podcast.status_code == 303
    assert podcast.headers["location"] == f"/login?next=%2Fpodcasts%2F{podcast_id}%3Fdays%3D7"
    episode = await client.get(f"/episodes/{episode_id}")
    assert episode.status_code == 303 and episode.headers["location"] == f"/login?next=%2Fepisodes%2F{episode_id}"
    nonsense = await client.get("/podcasts/nonsense")
    assert nonsense.status_code == 303


# --- the page's own small rules -------------------------------------------------------------------


def test_durations_links_and_episode_order() -> None:
    durations = [clock(None), clock(59), clock(754), clock(3600), clock(37_230)]
    assert durations == ["—", "0:59", "12:34", "1:00:00", "10:20:30"]
    assert web_link("https://feeds.example.com/show.xml") == "https://feeds.example.com/show.xml"
    assert web_link("javascript:alert(1)") is None and web_link(None) is None
    episodes: list[dict[str, Any]] = [
        {"id": "a", "title": "Draft", "published_at": None, "created_at": "2024-05-03T00:00:00Z"},
        {"id": "b", "title": "Old", "published_at": "2024-01-01T08:00:00Z", "created_at": "2024-01-01T00:00:00Z"},
        {"id": "c", "title": "New", "published_at": "2024-04-01T08:00:00+02:00", "created_at": "2024-01-02T00:00:00Z"},
    ]
    top = {"items": [{"episode_id": "b", "value": 12}]}
    listed = _episode_rows(episodes, top)
    assert [(row["id"], row["downloads"]) for row in listed] == [("c", 0), ("b", 12), ("a", 0)]
    # A full top-episodes answer may leave out episodes that had downloads: theirs are unknown, not 0.
    full = {"items": [{"episode_id": f"x{n}", "value": 1} for n in range(99)] + [{"episode_id": "b", "value": 12}]}
    assert [row["downloads"] for row in _episode_rows(episodes, full)] == [None, 12, None]
