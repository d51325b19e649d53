"""The counting rules of docs/measurement.md, one test per rule, through the recorder and the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.measurement.prefix import RawRequest
from castmetrics.measurement.recorder import Recorder
from castmetrics.rollups import service as rollups_service
from tests.factories.measurement import APPLE, OVERCAST, SPOTIFY, Show, request


async def record(recorder: Recorder, *requests: RawRequest) -> None:
    for item in requests:
        recorder.buffer.append(item)
    await recorder.flush()


async def downloads(client: httpx.AsyncClient, show: Show, scope: str = "tenant", **params: Any) -> list[int]:
    path = {"tenant": "/v1/analytics/tenant", "podcast": f"/v1/analytics/podcasts/{show.podcast_id}"}.get(
        scope, f"/v1/analytics/episodes/{scope}"
    )
    today = datetime.now(UTC).date()
    query = {"metric": "downloads", "from": (today - timedelta(days=2)).isoformat(), "to": today.isoformat()}
    response = await client.get(f"{path}/timeseries", params={**query, **params}, headers=show.team.auth("viewer"))
    assert response.status_code == 200, response.text
    return [point["value"] for point in response.json()["points"]]


async def today_downloads(client: httpx.AsyncClient, show: Show, scope: str = "tenant") -> int:
    return (await downloads(client, show, scope))[-1]


async def test_rule_1_bots(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> None:
    await record(
        recorder,
        request(
            show, agent="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", address="1.1.1.1"
        ),
        request(show, agent="Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", address="1.1.1.2"),
        request(show, agent="", address="1.1.1.3"),
        request(show, agent="   ", address="1.1.1.4"),
        request(show, agent=APPLE, address="1.1.1.5"),  # a library: counted
        request(show, agent="MyCustomPlayer/1.0", address="1.1.1.6"),  # matched nothing: counted
    )
    assert await today_downloads(client, show) == 2


async def test_rule_1_datacenter_ranges(
    client: httpx.AsyncClient, show: Show, settings, db: Database, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    ranges = tmp_path / "datacenters.txt"
    ranges.write_text("# cloud\n198.51.100.0/24\n2001:db8::/32\n")
    from castmetrics.measurement.prefix import Buffer

    recorder = Recorder(
        db, settings.model_copy(update={"data_dir": tmp_path, "datacenter_ranges_file": ranges}), Buffer()
    )
    await record(
        recorder,
        request(show, address="198.51.100.9"),
        request(show, address="2001:db8::1"),
        request(show, address="192.0.2.1"),
    )
    assert await today_downloads(client, show) == 1


async def test_rule_2_methods(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> None:
    await record(
        recorder, request(show, method="HEAD", address="2.2.2.1"), request(show, method="POST", address="2.2.2.2")
    )
    assert await today_downloads(client, show) == 0
    await record(recorder, request(show, method="GET", address="2.2.2.1"))
    assert await today_downloads(client, show) == 1


async def test_rule_3_probes(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> None:
    await record(recorder, request(show, range_="bytes=0-1", address="3.3.3.1"))
    assert await today_downloads(client, show) == 0
    # the same client's next request decides, and continuing the download adds nothing
    await record(
        recorder,
        request(show, range_="bytes=0-", address="3.3.3.1"),
        request(show, range_="bytes=2000000-", address="3.3.3.1"),
    )
    assert await today_downloads(client, show) == 1


async def test_rule_4_one_minute(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> None:
    # one minute of this episode is 1,000,000 bytes + 10,240 for ID3
    await record(recorder, request(show, range_="bytes=0-499999", address="4.4.4.1"))
    assert await today_downloads(client, show) == 0
    await record(recorder, request(show, range_="bytes=500000-999999", address="4.4.4.1"))
    assert await today_downloads(client, show) == 0  # 1,000,000 bytes: still short of the ID3 allowance
    await record(recorder, request(show, range_="bytes=1000000-1010239", address="4.4.4.1"))
    assert await today_downloads(client, show) == 1
    # one bounded range of more than a minute counts on its own
    await record(recorder, request(show, range_="bytes=0-1500000", address="4.4.4.2"))
    assert await today_downloads(client, show) == 2


async def test_rule_6_dedupe(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> None:
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    await record(
        recorder,
        request(show, address="6.6.6.1", agent=APPLE),
        request(show, address="6.6.6.1", agent=APPLE),  # same client, episode, day
        request(show, address="6.6.6.1", agent=OVERCAST),  # another app on the same address: another client
        request(show, 1, address="6.6.6.1", agent=APPLE),  # another episode
        request(show, address="2001:db8:aa:bb::1", agent=APPLE),
        request(show, address="2001:db8:aa:bb:ffff::2", agent=APPLE),  # same /64: same client
        request(show, address="6.6.6.1", agent=APPLE, at=yesterday),  # another UTC day
    )
    assert (await downloads(client, show))[-2:] == [1, 4]
    assert await today_downloads(client, show, show.episode_ids[0]) == 3
    # the rollups, once refreshed, give the same numbers as the raw tail
    await rollups_service.refresh_all(recorder.db)
    assert (await downloads(client, show))[-2:] == [1, 4]


async def test_rule_7_listeners(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> None:
    now = datetime.now(UTC)
    monday = (now - timedelta(days=now.weekday() + 7)).replace(hour=12)  # last week's Monday
    clients = [f"7.7.{n // 250}.{n % 250 + 1}" for n in range(300)]
    batch = []
    for day in range(7):
        for address in clients[: 100 + day * 30]:  # 100 on Monday … 280 on Sunday, the same people
            batch.append(request(show, address=address, at=monday + timedelta(days=day)))
    await record(recorder, *batch)
    await rollups_service.refresh_all(recorder.db)
    start = monday.date()
    daily = await client.get(
        "/v1/analytics/tenant/timeseries",
        params={"metric": "listeners", "from": start.isoformat(), "to": (start + timedelta(days=6)).isoformat()},
        headers=show.team.auth("owner"),
    )
    assert [p["value"] for p in daily.json()["points"]] == [100 + d * 30 for d in range(7)]
    assert daily.json()["estimate"] is False
    weekly = await client.get(
        "/v1/analytics/tenant/timeseries",
        params={
            "metric": "listeners",
            "interval": "week",
            "from": start.isoformat(),
            "to": (start + timedelta(days=6)).isoformat(),
        },
        headers=show.team.auth("owner"),
    )
    body = weekly.json()
    assert body["estimate"] is True and len(body["points"]) == 1
    assert abs(body["points"][0]["value"] - 280) <= 280 * 0.02  # the same people all week: 280, not 1,330
    downloads_week = await client.get(
        "/v1/analytics/tenant/timeseries",
        params={
            "metric": "downloads",
            "interval": "week",
            "from": start.isoformat(),
            "to": (start + timedelta(days=6)).isoformat(),
        },
        headers=show.team.auth("owner"),
    )
    assert downloads_week.json()["points"][0]["value"] == sum(100 + d * 30 for d in range(7))


async def test_breakdowns_by_country_app_and_device(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> None:
    await record(
        recorder,
        request(show, address="8.8.8.8", agent=APPLE),  # US
        request(show, 1, address="8.8.8.8", agent=APPLE),  # same client, second episode
        request(show, address="81.2.69.160", agent=SPOTIFY),  # GB
        request(show, address="10.1.2.3", agent=OVERCAST),  # private: no country
    )
    owner = show.team.auth("owner")
    by_country = await client.get("/v1/analytics/tenant/breakdown", params={"by": "country"}, headers=owner)
    assert by_country.json() == {
        "by": "country",
        "items": [
            {"key": "US", "downloads": 2, "listeners": 1},
            {"key": "GB", "downloads": 1, "listeners": 1},
            {"key": "Unknown", "downloads": 1, "listeners": 1},
        ],
    }
    await rollups_service.refresh_all(recorder.db)
    assert (
        await client.get("/v1/analytics/tenant/breakdown", params={"by": "country"}, headers=owner)
    ).json() == by_country.json()
    by_app = await client.get(
        f"/v1/analytics/episodes/{show.episode_ids[0]}/breakdown", params={"by": "app"}, headers=owner
    )
    assert {item["key"] for item in by_app.json()["items"]} == {"AppleCoreMedia", "Spotify", "Overcast"}
    by_category = await client.get("/v1/analytics/tenant/breakdown", params={"by": "device_category"}, headers=owner)
    assert by_category.json()["items"][0] == {"key": "mobile", "downloads": 4, "listeners": 3}


async def test_requests_match_episodes_through_other_prefixes_and_store_no_address(
    show: Show, recorder: Recorder, db: Database
) -> None:
    await record(
        recorder,
        request(show, prefix="dts.podtrac.com/redirect.mp3/chrt.fm/track/ABC123/", address="9.9.9.9"),
        request(show, prefix="op3.dev/e,pg=1234/", address="9.9.9.10"),
        RawRequest(
            at=datetime.now(UTC).timestamp(),
            slug=show.team.slug,
            url="unknown.example.org/x.mp3",
            address="9.9.9.11",
            user_agent=APPLE,
            referer="",
            range="",
            method="GET",
        ),  # fmt: skip
        RawRequest(
            at=datetime.now(UTC).timestamp(),
            slug="no-such-tenant",
            url="a.example/x.mp3",
            address="9.9.9.12",
            user_agent=APPLE,
            referer="",
            range="",
            method="GET",
        ),  # fmt: skip
    )
    async with db.tenant_transaction(show.team.tenant_id) as session:
        rows = (
            await session.execute(text("SELECT episode_id, to_jsonb(r)::text AS everything FROM download_requests r"))
        ).all()
    assert sorted(str(row.episode_id) for row in rows) == sorted([show.episode_ids[0]] * 2 + ["None"])
    assert not any("9.9.9." in row.everything for row in rows)  # the address is never stored


async def test_delivered_impressions_of_bookings(client: httpx.AsyncClient, show: Show, recorder: Recorder) -> None:
    sales = show.team.auth("sales")
    today = datetime.now(UTC).date()
    campaign = (
        await client.post(
            "/v1/campaigns",
            json={
                "name": "Q4",
                "start_date": (today - timedelta(days=5)).isoformat(),
                "end_date": (today + timedelta(days=5)).isoformat(),
            },
            headers=sales,
        )
    ).json()
    booking_body = {
        "podcast_id": show.podcast_id, "placement": "pre_roll", "pricing_model": "cpm", "rate_minor": 2500,
        "currency": "USD", "booked_impressions": 1000, "flight_start": (today - timedelta(days=1)).isoformat(),
        "flight_end": (today + timedelta(days=5)).isoformat(),
    }  # fmt: skip
    run_of_show = (
        await client.post(f"/v1/campaigns/{campaign['id']}/bookings", json=booking_body, headers=sales)
    ).json()
    one_episode = (
        await client.post(
            f"/v1/campaigns/{campaign['id']}/bookings",
            json={**booking_body, "placement": "mid_roll", "episode_id": show.episode_ids[1]},
            headers=sales,
        )
    ).json()
    assert run_of_show["delivered_impressions"] == 0
    await record(
        recorder,
        request(show, 0, address="5.5.5.1"),
        request(show, 1, address="5.5.5.2"),
        request(show, 1, address="5.5.5.3", at=datetime.now(UTC) - timedelta(days=3)),  # before the flight
    )
    await rollups_service.refresh_all(recorder.db)
    listed = (await client.get(f"/v1/campaigns/{campaign['id']}/bookings", headers=sales)).json()["items"]
    delivered = {item["id"]: item["delivered_impressions"] for item in listed}
    assert delivered == {run_of_show["id"]: 2, one_episode["id"]: 1}
    assert uuid.UUID(run_of_show["id"])


async def test_downloads_before_the_episode_exists_are_counted_once_it_does(
    client: httpx.AsyncClient, show: Show, recorder: Recorder
) -> None:
    late_url = "https://cdn.example.net/show/late-episode.mp3"
    early = RawRequest(
        at=datetime.now(UTC).timestamp(), slug=show.team.slug, url="dts.podtrac.com/redirect.mp3/" + late_url[8:],
        address="12.12.12.12", user_agent=APPLE, referer="", range="", method="GET",
    )  # fmt: skip
    await record(recorder, early)
    await rollups_service.refresh_all(recorder.db)
    assert await today_downloads(client, show) == 0  # no episode has that audio file yet
    created = await client.post(
        f"/v1/podcasts/{show.podcast_id}/episodes",
        json={"title": "Late", "audio_url": late_url},
        headers=show.team.auth("owner"),
    )
    assert created.status_code == 201
    await rollups_service.refresh_all(recorder.db)  # the new episode invalidated recent days: their recount matches
    assert await today_downloads(client, show, created.json()["id"]) == 1
