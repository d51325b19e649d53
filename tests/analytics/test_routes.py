"""The analytics routes through HTTP: shapes, CSV exports, validation, caching and tenant isolation."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest

from castmetrics.analytics import service as analytics
from castmetrics.measurement.recorder import Recorder
from castmetrics.rollups import service as rollups_service
from tests.factories.analytics import Traffic
from tests.factories.events import listener_event
from tests.factories.measurement import make_show, request

ROUTES = [
    "timeseries?metric=plays",
    "summary",
    "breakdown?by=country",
    "breakdown?by=event_type",
    "top-episodes",
    "launch",
]


def window(traffic: Traffic) -> dict[str, str]:
    return {"from": traffic.days[-1].isoformat(), "to": traffic.days[0].isoformat()}


async def get(client: httpx.AsyncClient, traffic: Traffic, path: str, role: str = "viewer", **params: Any) -> Any:
    response = await client.get(
        f"/v1/analytics/{path}", params={**window(traffic), **params}, headers=traffic.show.team.auth(role)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_summary_compares_with_the_previous_period(client: httpx.AsyncClient, traffic: Traffic) -> None:
    owner = traffic.show.team.auth("owner")
    # the previous ten days get a little traffic of their own
    before = datetime.combine(traffic.days[-1] - timedelta(days=3), time(12), tzinfo=UTC)
    events = [
        listener_event(traffic.show.episode_ids[2], listener_id=f"p{n}", occurred_at=before.isoformat())
        for n in range(4)
    ]
    assert (await client.post("/v1/events/listener", json=events, headers=owner)).json()["accepted"] == 4
    body = await get(client, traffic, f"podcasts/{traffic.show.podcast_id}/summary")
    assert body["from"] == traffic.days[-1].isoformat() and body["to"] == traffic.days[0].isoformat()
    assert body["previous_to"] == (traffic.days[-1] - timedelta(days=1)).isoformat()
    assert body["previous_from"] == (traffic.days[-1] - timedelta(days=10)).isoformat()
    items = {item["metric"]: item for item in body["metrics"]}
    assert list(items) == list(analytics.METRICS)
    plays = items["plays"]
    assert plays["previous"] == 4 and plays["value"] > 0
    assert plays["change"] == round((plays["value"] - 4) / 4, 4)
    assert items["downloads"]["previous"] == 0 and items["downloads"]["change"] is None
    assert items["unique_listeners"]["previous"] == 4
    assert items["listeners"]["estimate"] is True and items["plays"]["estimate"] is False
    ratio = items["listen_through_rate"]
    assert ratio["value"] == round(items["completes"]["value"] / plays["value"], 4)
    # unique listeners over the range are distinct over the range, not a sum of daily uniques
    daily = await get(client, traffic, f"podcasts/{traffic.show.podcast_id}/timeseries", metric="unique_listeners")
    assert items["unique_listeners"]["value"] <= 60 < sum(point["value"] for point in daily["points"])


async def test_top_episodes_and_launch_curves(client: httpx.AsyncClient, traffic: Traffic) -> None:
    top = await get(client, traffic, "tenant/top-episodes", metric="plays", limit=2)
    assert top["metric"] == "plays" and [item["rank"] for item in top["items"]] == [1, 2]
    values = [item["value"] for item in top["items"]]
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert {item["podcast_id"] for item in top["items"]} == {traffic.show.podcast_id}
    everything = await get(client, traffic, "tenant/top-episodes", metric="downloads")
    series = await get(client, traffic, "tenant/timeseries", metric="downloads")
    assert sum(item["value"] for item in everything["items"]) == sum(p["value"] for p in series["points"])
    rate = await get(client, traffic, "tenant/top-episodes", metric="listen_through_rate")
    assert all(0 < item["value"] <= 1 for item in rate["items"])

    launch = await get(client, traffic, f"podcasts/{traffic.show.podcast_id}/launch", limit=1)
    assert launch["windows"] == [1, 7, 30, 90] and launch["total"] == 2 and len(launch["episodes"]) == 1
    newest = launch["episodes"][0]
    assert newest["episode_id"] == traffic.show.episode_ids[1] and newest["day_30"] is None
    second = await get(client, traffic, f"podcasts/{traffic.show.podcast_id}/launch", limit=1, offset=1)
    older = second["episodes"][0]
    assert older["day_7"] >= older["day_1"] and older["day_90"] is None
    average = launch["average"]
    assert average["episodes_1"] == 2 and average["day_1"] == (newest["day_1"] + older["day_1"]) / 2
    assert average["episodes_7"] == 1 and average["day_7"] == older["day_7"] and average["day_30"] is None


async def test_hours_weeks_months_and_time_zones(client: httpx.AsyncClient, traffic: Traffic) -> None:
    owner = traffic.show.team.auth("owner")
    hourly = await get(client, traffic, "tenant/timeseries", metric="downloads", interval="hour")
    assert len(hourly["points"]) == 24 * 10
    daily = await get(client, traffic, "tenant/timeseries", metric="downloads")
    assert sum(p["value"] for p in hourly["points"]) == sum(p["value"] for p in daily["points"])
    monthly = await get(client, traffic, "tenant/timeseries", metric="plays", interval="month", tz="Asia/Kolkata")
    assert monthly["points"][0]["bucket"].endswith("+05:30") and monthly["points"][0]["bucket"][8:10] == "01"
    ratio = await get(client, traffic, "tenant/timeseries", metric="avg_listen_seconds", interval="week")
    assert all(p["value"] is None or p["value"] >= 0 for p in ratio["points"])
    # tz=tenant is the tenant's own zone
    assert (await client.patch("/v1/tenant", json={"time_zone": "Asia/Tokyo"}, headers=owner)).status_code == 200
    tenant_zone = await get(client, traffic, "tenant/timeseries", metric="plays", tz="tenant")
    assert tenant_zone["tz"] == "Asia/Tokyo" and tenant_zone["points"][0]["bucket"].endswith("+09:00")


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"metric": "listeners", "tz": "Europe/Paris"}, "tz"),
        ({"metric": "listeners", "interval": "hour"}, "tz"),
        ({"metric": "plays", "interval": "hour", "from": "2026-01-01", "to": "2026-06-01"}, "from"),
        ({"metric": "plays", "interval": "fortnight"}, None),
        ({"metric": "plays", "tz": "tenant/../etc"}, "tz"),
    ],
)
async def test_bad_questions_get_a_clear_problem(
    client: httpx.AsyncClient, traffic: Traffic, params: dict[str, str], parameter: str | None
) -> None:
    response = await client.get(
        "/v1/analytics/tenant/timeseries", params=params, headers=traffic.show.team.auth("viewer")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if parameter:
        assert response.json().get("parameter") == parameter, response.json()


async def test_top_episodes_refuse_non_additive_metrics_and_bad_limits(
    client: httpx.AsyncClient, traffic: Traffic
) -> None:
    for params in ({"metric": "unique_listeners"}, {"limit": 0}, {"limit": 101}):
        response = await client.get(
            "/v1/analytics/tenant/top-episodes", params=params, headers=traffic.show.team.auth("viewer")
        )
        assert response.status_code == 422, response.text


@pytest.mark.parametrize("route", ROUTES)
async def test_every_answer_exports_as_csv(client: httpx.AsyncClient, traffic: Traffic, route: str) -> None:
    path, _, query = route.partition("?")
    params = dict(pair.split("=") for pair in query.split("&")) if query else {}
    url = f"/v1/analytics/podcasts/{traffic.show.podcast_id}/{path}"
    headers = traffic.show.team.auth("analyst")  # analysts may export (analytics:export)
    as_json = await client.get(url, params={**window(traffic), **params}, headers=headers)
    as_csv = await client.get(url, params={**window(traffic), **params}, headers={**headers, "Accept": "text/csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    body = as_json.json()
    listed = body.get("points") or body.get("metrics") or body.get("items") or body.get("episodes")
    extra = 1 if path == "launch" else 0  # the average row
    assert len(rows) == 1 + len(listed) + extra
    if path == "timeseries":
        assert rows[0] == ["bucket", "plays"]
        assert [int(row[1]) for row in rows[1:]] == [point["value"] for point in body["points"]]
    if path == "summary":
        assert rows[0] == ["metric", "value", "previous", "change", "estimate"]
        assert [row[0] for row in rows[1:]] == list(analytics.METRICS)


async def test_weekly_listeners_estimate_is_within_one_percent(
    client: httpx.AsyncClient, traffic: Traffic, recorder: Recorder
) -> None:
    rng = random.Random(3)
    monday = datetime.combine(traffic.days[0] - timedelta(days=traffic.days[0].weekday() + 14), time(8), tzinfo=UTC)
    clients = 20_000
    for day in range(7):
        for n in range(clients):
            if rng.random() < 0.35 or day == n % 7:  # everyone comes at least once in the week
                address = f"100.{n // 62500}.{n // 250 % 250}.{n % 250}"
                at = monday + timedelta(days=day, seconds=n)
                recorder.buffer.append(request(traffic.show, address=address, at=at))
        await recorder.flush()
    await rollups_service.refresh_all(recorder.db)
    week = {"from": monday.date().isoformat(), "to": (monday.date() + timedelta(days=6)).isoformat()}
    response = await client.get(
        "/v1/analytics/tenant/timeseries",
        params={"metric": "listeners", "interval": "week", **week},
        headers=traffic.show.team.auth("viewer"),
    )
    body = response.json()
    assert body["estimate"] is True and len(body["points"]) == 1
    assert abs(body["points"][0]["value"] - clients) <= clients * 0.01, body


async def test_cached_answers_stay_current_and_stay_with_their_tenant(
    client: httpx.AsyncClient,
    traffic: Traffic,
    make_team,
    owner_db,
    app,  # type: ignore[no-untyped-def]
) -> None:
    cache = app.state.analytics_cache
    assert cache.enabled
    owner = traffic.show.team.auth("owner")
    first = await get(client, traffic, "tenant/summary")
    hits = cache.hits
    again = await get(client, traffic, "tenant/summary")
    assert again == first and cache.hits == hits + 1
    # a new batch is seen at once
    event = listener_event(traffic.show.episode_ids[2], listener_id="newcomer")
    assert (await client.post("/v1/events/listener", json=[event], headers=owner)).json()["accepted"] == 1
    fresh = {i["metric"]: i["value"] for i in (await get(client, traffic, "tenant/summary"))["metrics"]}
    old = {i["metric"]: i["value"] for i in first["metrics"]}
    assert fresh["plays"] == old["plays"] + 1 and fresh["unique_listeners"] == old["unique_listeners"] + 1
    # another tenant asking the very same question gets its own (empty) numbers
    other = await make_team("pro")
    theirs = await client.get("/v1/analytics/tenant/summary", params=window(traffic), headers=other.auth("owner"))
    assert theirs.status_code == 200
    assert all(item["value"] in (0, None) for item in theirs.json()["metrics"])
    # and nobody reaches another tenant's podcast
    stolen = await client.get(
        f"/v1/analytics/podcasts/{traffic.show.podcast_id}/summary", params=window(traffic), headers=other.auth("owner")
    )
    assert stolen.status_code == 404


async def test_a_tenant_without_data_gets_zeros_everywhere(client: httpx.AsyncClient, make_team, owner_db) -> None:  # type: ignore[no-untyped-def]
    show = await make_show(client, await make_team("pro"), owner_db, episodes=1)
    headers = show.team.auth("viewer")
    for route in ROUTES:
        path, _, query = route.partition("?")
        params = dict(pair.split("=") for pair in query.split("&")) if query else {}
        response = await client.get(f"/v1/analytics/tenant/{path}", params=params, headers=headers)
        assert response.status_code == 200, (route, response.text)
    series = await client.get(
        "/v1/analytics/tenant/timeseries", params={"metric": "listen_through_rate"}, headers=headers
    )
    assert [p["value"] for p in series.json()["points"]] == [None] * 30


async def test_a_summary_of_chosen_metrics(client: httpx.AsyncClient, traffic: Traffic) -> None:
    full = await get(client, traffic, "tenant/summary")
    some = await get(client, traffic, "tenant/summary", metric=["unique_listeners", "plays"])
    assert [item["metric"] for item in some["metrics"]] == ["plays", "unique_listeners"]
    by_metric = {item["metric"]: item for item in full["metrics"]}
    assert some["metrics"] == [by_metric["plays"], by_metric["unique_listeners"]]
    bad = await client.get(
        "/v1/analytics/tenant/summary", params={"metric": "hugs"}, headers=traffic.show.team.auth("viewer")
    )
    assert bad.status_code == 422


async def test_a_csv_export_needs_the_export_permission(client: httpx.AsyncClient, traffic: Traffic) -> None:
    # given a viewer, who may read analytics but not export them
    url = f"/v1/analytics/podcasts/{traffic.show.podcast_id}/summary"
    viewer = traffic.show.team.auth("viewer")
    # when they ask for the answer as a file, then it is refused, naming the permission
    refused = await client.get(url, params=window(traffic), headers={**viewer, "Accept": "text/csv"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["permission"] == "analytics:export"
    # while the same answer as JSON is theirs to read
    assert (await client.get(url, params=window(traffic), headers=viewer)).status_code == 200
