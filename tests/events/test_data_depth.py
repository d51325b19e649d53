"""Event data nested too deeply is refused per item, by reason, never a 500 (the limit workflow run
payloads share: issue 26 item 10)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from castmetrics.db.session import Database
from castmetrics.events.validation import MAX_DATA_DEPTH, nesting_exceeds
from tests.factories.events import Catalog, count_events, listener_event


def nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` deep: ``{"a": {"a": … {}}}``."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_json(levels: int) -> bytes:
    """``nested(levels)`` as JSON text, however deep (JSON encoders stop at a few hundred levels)."""
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def test_nesting_is_measured_in_levels() -> None:
    assert not nesting_exceeds(nested(MAX_DATA_DEPTH)) and nesting_exceeds(nested(MAX_DATA_DEPTH + 1))
    assert not nesting_exceeds({"a": [1, {"b": 2}], "c": "{[{[{["}, limit=3)
    assert nesting_exceeds({"a": [1, {"b": []}]}, limit=3)
    assert not nesting_exceeds(nested(5000), limit=5000)  # no recursion to run out of


async def test_event_data_nested_too_deeply_is_refused_by_reason(
    client: httpx.AsyncClient, catalog: Catalog, db: Database
) -> None:
    # given events whose data nests at the limit, past it, and past what the JSON encoder takes
    depths = (MAX_DATA_DEPTH, MAX_DATA_DEPTH + 1, 300)
    events = [
        orjson.dumps(listener_event(catalog.episode_ids[0]))[:-1] + b',"event_data":' + nested_json(levels) + b"}"
        for levels in depths
    ]
    # when they are sent
    sent = await client.post(
        "/v1/events/listener",
        content=b"[" + b",".join(events) + b"]",
        headers={**catalog.team.auth("owner"), "Content-Type": "application/json"},
    )
    # then the one at the limit is stored and the deeper ones are refused, each with the reason
    assert sent.status_code == 200, sent.text
    body = sent.json()
    too_deep = f"event_data is nested more than {MAX_DATA_DEPTH} levels deep"
    assert body["accepted"] == 1
    assert body["rejected"] == [{"index": 1, "error": too_deep}, {"index": 2, "error": too_deep}]
    assert await count_events(db, catalog.team.tenant_id) == 1
