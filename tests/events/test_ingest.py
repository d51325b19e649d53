"""Ingestion: all-or-nothing batches, duplicates, per-item refusals, NDJSON, limits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from sqlalchemy import text

from castmetrics.db.session import Database
from tests.factories.events import Catalog, count_events, listener_event


async def test_a_batch_is_stored_and_a_retry_counts_as_duplicates(
    client: httpx.AsyncClient, catalog: Catalog, db: Database
) -> None:
    owner = catalog.team.auth("owner")
    batch = [listener_event(catalog.episode_ids[i % 3]) for i in range(50)]
    first = await client.post("/v1/events/listener", json=batch, headers=owner)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 50, "duplicates": 0, "rejected": []}
    again = await client.post("/v1/events/listener", json=batch, headers=owner)
    assert again.json() == {"accepted": 0, "duplicates": 50, "rejected": []}
    # half new, half repeated
    mixed = batch[:10] + [listener_event(catalog.episode_ids[0]) for _ in range(5)]
    third = await client.post("/v1/events/listener", json=mixed, headers=owner)
    assert third.json() == {"accepted": 5, "duplicates": 10, "rejected": []}
    assert await count_events(db, catalog.team.tenant_id) == 55


async def test_bad_items_are_refused_by_index_and_the_rest_kept(
    client: httpx.AsyncClient, catalog: Catalog, db: Database, make_team
) -> None:  # type: ignore[no-untyped-def]
    other = await make_team("pro")
    owner = catalog.team.auth("owner")
    foreign = await client.post("/v1/podcasts", json={"name": "Theirs"}, headers=other.auth("owner"))
    foreign_episode = (
        await client.post(
            f"/v1/podcasts/{foreign.json()['id']}/episodes", json={"title": "x"}, headers=other.auth("owner")
        )
    ).json()["id"]
    ep = catalog.episode_ids[0]
    now = datetime.now(UTC)
    batch = [
        listener_event(ep),  # 0 ok
        listener_event(ep, event_type="dance"),  # 1
        listener_event(foreign_episode),  # 2 another tenant's episode
        listener_event(ep, occurred_at=(now - timedelta(days=800)).isoformat()),  # 3 past retention
        listener_event(ep, occurred_at=(now + timedelta(days=2)).isoformat()),  # 4 too far ahead
        listener_event(ep, occurred_at="2026-11-20T10:00:00"),  # 5 no zone
        "not an object",  # 6
        listener_event(ep, id="nope"),  # 7
        listener_event(ep, colour="red"),  # 8 unknown field
        listener_event(ep, event_data={"listened_seconds": -3}),  # 9
        listener_event(ep, event_type="complete", event_data={"listened_seconds": 1800.5}),  # 10 ok
    ]
    response = await client.post("/v1/events/listener", json=batch, headers=owner)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    reasons = {r["index"]: r["error"] for r in body["rejected"]}
    assert "event_type" in reasons[1]
    assert reasons[2] == "episode_id: no such episode"
    assert "retention" in reasons[3]
    assert "future" in reasons[4]
    assert "zone" in reasons[5]
    assert "unknown field" in reasons[8]
    assert await count_events(db, catalog.team.tenant_id) == 2
    assert await count_events(db, other.tenant_id) == 0


async def test_ndjson_with_a_broken_line(client: httpx.AsyncClient, catalog: Catalog, db: Database) -> None:
    ep = catalog.episode_ids[1]
    lines = [orjson.dumps(listener_event(ep)), b"{broken", b"", orjson.dumps(listener_event(ep))]
    response = await client.post(
        "/v1/events/listener",
        content=b"\n".join(lines) + b"\n",
        headers={**catalog.team.auth("owner"), "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    assert response.json()["rejected"][0]["index"] == 1
    assert await count_events(db, catalog.team.tenant_id) == 2


async def test_body_shape_errors(client: httpx.AsyncClient, catalog: Catalog) -> None:
    owner = catalog.team.auth("owner")
    not_array = await client.post("/v1/events/listener", json={"a": 1}, headers=owner)
    assert not_array.status_code == 422
    assert not_array.headers["content-type"].startswith("application/problem+json")
    broken = await client.post(
        "/v1/events/listener", content=b"[{", headers={**owner, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    xml = await client.post("/v1/events/listener", content=b"<a/>", headers={**owner, "Content-Type": "text/xml"})
    assert xml.status_code == 415
    too_many = [listener_event(catalog.episode_ids[0]) for _ in range(10_001)]
    big = await client.post("/v1/events/listener", json=too_many, headers=owner)
    assert big.status_code == 413
    assert "10,000" in big.json()["detail"]


async def test_attribution_events_and_conversion_outbox(
    client: httpx.AsyncClient, catalog: Catalog, db: Database
) -> None:
    owner = catalog.team.auth("owner")
    now = datetime.now(UTC).isoformat()
    batch = [
        {"campaign_id": catalog.campaign_id, "listener_id": "l1", "attribution_type": "impression",
         "episode_id": catalog.episode_ids[0], "occurred_at": now, "id": str(uuid.uuid4())},
        {"campaign_id": catalog.campaign_id, "listener_id": "l1", "attribution_type": "conversion",
         "attribution_data": {"revenue": 49.9, "currency": "USD"}, "occurred_at": now, "id": str(uuid.uuid4())},
        {"campaign_id": str(uuid.uuid4()), "listener_id": "l1", "attribution_type": "click", "occurred_at": now},
        {"campaign_id": catalog.campaign_id, "listener_id": "l1", "attribution_type": "conversion",
         "attribution_data": {"revenue": 10}, "occurred_at": now},
    ]  # fmt: skip
    response = await client.post("/v1/events/attribution", json=batch, headers=owner)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [2, 3]
    assert body["rejected"][0]["error"] == "campaign_id: no such campaign"
    again = await client.post("/v1/events/attribution", json=batch[:2], headers=owner)
    assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    # without an id, an event is new every time it is sent
    anonymous = {k: v for k, v in batch[0].items() if k != "id"}
    assert (await client.post("/v1/events/attribution", json=[anonymous], headers=owner)).json()["accepted"] == 1
    async with db.tenant_transaction(catalog.team.tenant_id) as session:
        events = (
            (await session.execute(text("SELECT payload FROM outbox_events WHERE event_type = 'conversion.recorded'")))
            .scalars()
            .all()
        )
    assert len(events) == 1
    assert events[0]["revenue"] == 49.9 and events[0]["currency"] == "USD"


async def test_permissions_and_ingest_keys(client: httpx.AsyncClient, catalog: Catalog) -> None:
    team = catalog.team
    batch = [listener_event(catalog.episode_ids[0])]
    viewer = await client.post("/v1/events/listener", json=batch, headers=team.auth("viewer"))
    assert viewer.status_code == 403
    anonymous = await client.post("/v1/events/listener", json=batch)
    assert anonymous.status_code == 401
    key = await client.post("/v1/api-keys", json={"name": "sdk", "scopes": ["ingest"]}, headers=team.auth("owner"))
    assert key.status_code == 201, key.text
    ingest = {"Authorization": f"Bearer {key.json()['key']}"}
    stored = await client.post("/v1/events/listener", json=batch, headers=ingest)
    assert stored.status_code == 200 and stored.json()["accepted"] == 1
    read = await client.get("/v1/analytics/tenant/timeseries?metric=plays", headers=ingest)
    assert read.status_code == 403
