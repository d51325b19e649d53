"""Per-item validation of incoming events: fast, hand-written, one clear reason per refused item.

A request carries up to 10,000 events; pydantic per item would cost more than writing them, so each
item is checked here in one pass and turned into the row that is written (a tuple in column order).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

from castmetrics.events.partitions import AcceptedRange

LISTENER_TYPES = frozenset({"download", "play", "pause", "resume", "seek", "skip", "progress", "complete"})
ATTRIBUTION_TYPES = frozenset({"impression", "click", "visit", "signup", "conversion"})
LISTENER_FIELDS = frozenset({"id", "episode_id", "listener_id", "event_type", "event_data", "occurred_at"})
ATTRIBUTION_FIELDS = frozenset(
    {"id", "campaign_id", "episode_id", "listener_id", "attribution_type", "attribution_data", "occurred_at"}
)
MAX_LISTENER_ID = 200
MAX_DATA_BYTES = 8192
MAX_LISTENED_SECONDS = 86_400


class ItemError(ValueError):
    """Why one event is refused; the message is what the client reads."""


@dataclass(slots=True)
class Validated:
    """The items of one batch that passed, in their order, and the refused ones by index."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0

    def reject(self, index: int, error: str) -> None:
        self.rejected.append({"index": index, "error": error})

    @property
    def days(self) -> set[date]:
        return {row[-1].astimezone(UTC).date() for row in self.rows}


def _uuid(item: dict[str, Any], name: str, *, required: bool = True) -> uuid.UUID | None:
    value = item.get(name)
    if value is None:
        if required:
            raise ItemError(f"{name} is required")
        return None
    if type(value) is not str:
        raise ItemError(f"{name} must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ItemError(f"{name} is not a valid UUID") from None


def _listener_id(item: dict[str, Any]) -> str:
    value = item.get("listener_id")
    if type(value) is not str or not value:
        raise ItemError("listener_id is required (a non-empty string)")
    if len(value) > MAX_LISTENER_ID or "\x00" in value:
        raise ItemError(f"listener_id must be at most {MAX_LISTENER_ID} characters without NUL")
    return value


def _occurred_at(item: dict[str, Any], accepted: AcceptedRange) -> datetime:
    value = item.get("occurred_at")
    if type(value) is not str:
        raise ItemError("occurred_at is required (an ISO 8601 datetime with a zone)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ItemError("occurred_at is not an ISO 8601 datetime") from None
    if moment.tzinfo is None:
        raise ItemError("occurred_at needs a time zone (such as Z or +01:00)")
    if moment < accepted.earliest:
        raise ItemError(f"occurred_at is older than the retention (earliest accepted {accepted.earliest.isoformat()})")
    if moment >= accepted.latest:
        raise ItemError("occurred_at is more than a day in the future")
    return moment


def _data(item: dict[str, Any], name: str) -> bytes | None:
    value = item.get(name)
    if value is None:
        return None
    if type(value) is not dict:
        raise ItemError(f"{name} must be a JSON object")
    encoded = orjson.dumps(value)
    if len(encoded) > MAX_DATA_BYTES:
        raise ItemError(f"{name} is larger than {MAX_DATA_BYTES} bytes")
    if b"\\u0000" in encoded:
        raise ItemError(f"{name} may not contain NUL characters")
    return encoded


def _check_listened(item: dict[str, Any]) -> None:
    data = item.get("event_data")
    if not data or "listened_seconds" not in data:
        return
    seconds = data["listened_seconds"]
    if type(seconds) not in (int, float) or not math.isfinite(seconds) or not 0 <= seconds <= MAX_LISTENED_SECONDS:
        raise ItemError(f"event_data.listened_seconds must be a number from 0 to {MAX_LISTENED_SECONDS}")


def _check_conversion(item: dict[str, Any]) -> None:
    data = item.get("attribution_data") or {}
    revenue = data.get("revenue")
    currency = data.get("currency")
    if revenue is not None:
        if type(revenue) not in (int, float) or not math.isfinite(revenue) or revenue < 0:
            raise ItemError("attribution_data.revenue must be a number of at least 0 (major units)")
        if type(currency) is not str or len(currency) != 3 or not currency.isascii() or not currency.isupper():
            raise ItemError("attribution_data.currency must be an ISO 4217 code such as USD with a revenue")
    elif currency is not None:
        raise ItemError("attribution_data.currency is given without attribution_data.revenue")


def _unknown(item: dict[str, Any], allowed: frozenset[str]) -> None:
    if item.keys() <= allowed:
        return
    extra = sorted(set(item) - allowed)
    raise ItemError(f"unknown field {extra[0]!r}")


def validate(
    kind: str, tenant_id: uuid.UUID, items: Iterable[tuple[int, Any]], accepted: AcceptedRange
) -> tuple[Validated, set[uuid.UUID], set[uuid.UUID]]:
    """Check each ``(index, item)``; answers the valid rows and the episode and campaign ids they name
    (the caller refuses those not of this tenant)."""
    result = Validated()
    seen: set[tuple[uuid.UUID, datetime]] = set()
    episodes: set[uuid.UUID] = set()
    campaigns: set[uuid.UUID] = set()
    listener = kind == "listener"
    for index, item in items:
        try:
            if type(item) is not dict:
                raise ItemError("an event must be a JSON object")
            row: tuple[Any, ...]
            if listener:
                _unknown(item, LISTENER_FIELDS)
                event_type = item.get("event_type")
                if event_type not in LISTENER_TYPES:
                    raise ItemError(f"event_type must be one of {', '.join(sorted(LISTENER_TYPES))}")
                episode_id = _uuid(item, "episode_id")
                assert episode_id is not None
                listener_id = _listener_id(item)
                _check_listened(item)
                data = _data(item, "event_data")
                event_id = _uuid(item, "id", required=False) or uuid.uuid4()
                occurred_at = _occurred_at(item, accepted)
                row = (tenant_id, event_id, episode_id, listener_id, event_type, data, occurred_at)
                episodes.add(episode_id)
            else:
                _unknown(item, ATTRIBUTION_FIELDS)
                attribution_type = item.get("attribution_type")
                if attribution_type not in ATTRIBUTION_TYPES:
                    raise ItemError(f"attribution_type must be one of {', '.join(sorted(ATTRIBUTION_TYPES))}")
                campaign_id = _uuid(item, "campaign_id")
                assert campaign_id is not None
                episode = _uuid(item, "episode_id", required=False)
                listener_id = _listener_id(item)
                if attribution_type == "conversion":
                    _check_conversion(item)
                data = _data(item, "attribution_data")
                event_id = _uuid(item, "id", required=False) or uuid.uuid4()
                occurred_at = _occurred_at(item, accepted)
                row = (tenant_id, event_id, campaign_id, episode, listener_id, attribution_type, data, occurred_at)
                campaigns.add(campaign_id)
                if episode is not None:
                    episodes.add(episode)
        except ItemError as exc:
            result.reject(index, str(exc))
            continue
        key = (event_id, occurred_at)
        if key in seen:  # the same event twice in one batch: stored once
            result.duplicates += 1
            continue
        seen.add(key)
        result.rows.append(row)
        result.indexes.append(index)
    return result, episodes, campaigns


def drop_unknown_references(
    validated: Validated, kind: str, known_episodes: set[uuid.UUID], known_campaigns: set[uuid.UUID]
) -> Validated:
    """Refuse the rows naming an episode or campaign this tenant does not have (another tenant's
    looks exactly like a missing one)."""
    kept = Validated(rejected=validated.rejected, duplicates=validated.duplicates)
    for index, row in zip(validated.indexes, validated.rows, strict=True):
        if kind == "listener":
            if row[2] not in known_episodes:
                kept.reject(index, "episode_id: no such episode")
                continue
        else:
            if row[2] not in known_campaigns:
                kept.reject(index, "campaign_id: no such campaign")
                continue
            if row[3] is not None and row[3] not in known_episodes:
                kept.reject(index, "episode_id: no such episode")
                continue
        kept.rows.append(row)
        kept.indexes.append(index)
    kept.rejected.sort(key=lambda r: r["index"])
    return kept
