"""Per-item validation of incoming events: fast, hand-written, one clear reason per refused item.

A request carries up to 10,000 events and a bulk import millions; pydantic per item would cost more
than writing them, so each item is checked here in one pass and turned into the row that is written
(a tuple in column order, ``occurred_at`` normalised to UTC). The loops are written for speed: the
common case makes no function call per field and parses a reference id (episode, campaign) once per
batch; the helpers below run only for a refused item and word the reason.
"""

from __future__ import annotations

import gc
import math
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
# The deepest a data object may nest objects and lists ({} is 1 level): the one limit every JSON a client
# sends is held to (workflow payloads too). Far deeper, orjson could not encode it (past 254 levels).
MAX_DATA_DEPTH = 32
MAX_LISTENED_SECONDS = 86_400

_NOT_AN_OBJECT = "an event must be a JSON object"
_LISTENER_TYPE = f"event_type must be one of {', '.join(sorted(LISTENER_TYPES))}"
_ATTRIBUTION_TYPE = f"attribution_type must be one of {', '.join(sorted(ATTRIBUTION_TYPES))}"


# ``uuid.UUID(text)`` costs a microsecond, the most of any check; the canonical form (36 characters)
# is built here the way ``UUID.__init__`` itself sets its slots, from the same ``int(hex, 16)``.
_UUID = uuid.UUID
_new_object = object.__new__
_set_slot = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def fast_uuid(text: str) -> uuid.UUID:
    """``uuid.UUID(text)``, faster for the canonical form; raises ``ValueError`` exactly when it does."""
    digits = text.replace("-", "")
    if len(text) != 36 or len(digits) != 32 or not digits.isalnum():  # braces, "urn:uuid:", …
        return _UUID(text)
    value = _new_object(_UUID)
    _set_slot(value, "int", int(digits, 16))
    _set_slot(value, "is_safe", _SAFE_UNKNOWN)
    return value


class ItemError(ValueError):
    """Why one event is refused; the message is what the client reads."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector over a synchronous stretch (no ``await`` inside, so no
    other request runs meanwhile). Parsing and validating a batch allocates tens of thousands of
    containers that mostly die right after; with the collector running, its passes would scan them,
    promote the survivors and so trigger full passes over the whole application heap. Reference
    counting still frees everything; the collector resumes (and runs as due) when the block ends."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an aware datetime: the day partition its event belongs to."""
    return moment.date() if moment.tzinfo is UTC else moment.astimezone(UTC).date()


def _by_index(rejected: dict[str, Any]) -> Any:
    return rejected["index"]


@dataclass(slots=True)
class Validated:
    """The items of one batch that passed, in their order, and the refused ones by index."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    # The episodes and campaigns the valid items name (checked against the tenant's afterwards).
    episode_ids: set[uuid.UUID] = field(default_factory=set)
    campaign_ids: set[uuid.UUID] = field(default_factory=set)

    def reject(self, index: int, error: str) -> None:
        self.rejected.append({"index": index, "error": error})

    @property
    def days(self) -> set[date]:
        return {utc_day(row[-1]) for row in self.rows}


def _uuid(item: dict[str, Any], name: str, *, required: bool = True) -> uuid.UUID | None:
    value = item.get(name)
    if value is None:
        if required:
            raise ItemError(f"{name} is required")
        return None
    if type(value) is not str:
        raise ItemError(f"{name} must be a UUID string")
    try:
        return fast_uuid(value)
    except ValueError:
        raise ItemError(f"{name} is not a valid UUID") from None


def _reference(item: dict[str, Any], name: str, parsed: dict[str, uuid.UUID]) -> uuid.UUID:
    """A required reference id, parsed once per batch (the same episode recurs thousands of times)."""
    value: Any = item.get(name)
    if type(value) is str:
        known = parsed.get(value)
        if known is not None:
            return known
    ident = _uuid(item, name)
    assert ident is not None
    parsed[value] = ident
    return ident


def _listener_id(item: dict[str, Any]) -> str:
    value = item.get("listener_id")
    if type(value) is not str or not value:
        raise ItemError("listener_id is required (a non-empty string)")
    if len(value) > MAX_LISTENER_ID or "\x00" in value:
        raise ItemError(f"listener_id must be at most {MAX_LISTENER_ID} characters without NUL")
    return value


def _event_id(value: Any) -> uuid.UUID:
    """The item's ``id``, or a new one when it has none (then a retry cannot be recognised)."""
    if value is None:
        return uuid.uuid4()
    if type(value) is not str:
        raise ItemError("id must be a UUID string")
    try:
        return fast_uuid(value)
    except ValueError:
        raise ItemError("id is not a valid UUID") from None


def _occurred_at(value: Any, accepted: AcceptedRange) -> datetime:
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
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def nesting_exceeds(value: Any, limit: int = MAX_DATA_DEPTH) -> bool:
    """Whether a JSON value nests objects and lists more than ``limit`` levels deep (a scalar is 0, ``{}``
    1, ``{"a": []}`` 2). Walks without recursion, so no depth can crash it."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _too_deep(name: str) -> ItemError:
    return ItemError(f"{name} is nested more than {MAX_DATA_DEPTH} levels deep")


def _data(value: Any, name: str) -> bytes:
    """A free-form JSON object, encoded for the jsonb column."""
    if type(value) is not dict:
        raise ItemError(f"{name} must be a JSON object")
    # A compact copy: orjson's output buffer is oversized, and keeping thousands of them alive at
    # once makes every later allocation slow.
    try:
        encoded = memoryview(orjson.dumps(value)).tobytes()
    except orjson.JSONEncodeError as exc:  # nested past orjson's limit, or a number it cannot encode
        raise (_too_deep(name) if nesting_exceeds(value) else ItemError(f"{name} cannot be stored: {exc}")) from None
    if len(encoded) > MAX_DATA_BYTES:
        raise ItemError(f"{name} is larger than {MAX_DATA_BYTES} bytes")
    # Counting brackets is cheap; only data with enough of them is walked.
    if encoded.count(b"{") + encoded.count(b"[") > MAX_DATA_DEPTH and nesting_exceeds(value):
        raise _too_deep(name)
    if b"\\u0000" in encoded:
        raise ItemError(f"{name} may not contain NUL characters")
    return encoded


def _check_listened(data: dict[str, Any]) -> None:
    seconds = data["listened_seconds"]
    if type(seconds) not in (int, float) or not math.isfinite(seconds) or not 0 <= seconds <= MAX_LISTENED_SECONDS:
        raise ItemError(f"event_data.listened_seconds must be a number from 0 to {MAX_LISTENED_SECONDS}")


def _check_conversion(data: dict[str, Any]) -> None:
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


class Checker:
    """Validates one batch, fed in one piece or in slices (the bulk import yields to its database
    writes between slices); an event repeated anywhere in the batch is counted once as a duplicate."""

    def __init__(self, kind: str, tenant_id: uuid.UUID, accepted: AcceptedRange) -> None:
        self.kind = kind
        self.tenant_id = tenant_id
        self.accepted = accepted
        self.result = Validated()
        # The events of the batch so far: the first occurred_at of each id (as an integer, which hashes
        # fast; an aware datetime does not), and any further (id, occurred_at) pairs of an id.
        self._first: dict[int, datetime] = {}
        self._more: set[tuple[int, datetime]] = set()
        # Reference ids parsed once per batch, by their text.
        self._episodes: dict[str, uuid.UUID] = {}
        self._campaigns: dict[str, uuid.UUID] = {}

    def _repeated(self, key: int, first: datetime, moment: datetime) -> bool:
        """Whether the event ``(key, moment)`` came earlier in the batch (its id came before)."""
        if first == moment or (key, moment) in self._more:
            return True
        self._more.add((key, moment))  # the same id at another time: another event
        return False

    def feed(self, items: Iterable[tuple[int, Any]]) -> None:
        if self.kind == "listener":
            self._listener(items)
        else:
            self._attribution(items)

    def _listener(self, items: Iterable[tuple[int, Any]]) -> None:  # noqa: C901 - ingest's hot loop, inlined for speed
        out, episodes, tenant_id = self.result, self._episodes, self.tenant_id
        first_seen, repeated = self._first.setdefault, self._repeated
        rows, indexes, rejected = out.rows, out.indexes, out.rejected
        named: set[str] = set()  # the texts of the episode ids of valid items
        accepted = self.accepted
        earliest, latest = accepted.earliest, accepted.latest
        parse_moment, new_object, set_slot, UUID, safe = (
            datetime.fromisoformat,
            _new_object,
            _set_slot,
            _UUID,
            _SAFE_UNKNOWN,
        )
        duplicates = 0
        for index, item in items:
            try:
                if type(item) is not dict:
                    raise ItemError(_NOT_AN_OBJECT)
                if not item.keys() <= LISTENER_FIELDS:
                    _unknown(item, LISTENER_FIELDS)
                event_type = item.get("event_type")
                if type(event_type) is not str or event_type not in LISTENER_TYPES:
                    raise ItemError(_LISTENER_TYPE)
                episode_text: Any = item.get("episode_id")
                episode_id = episodes.get(episode_text) if type(episode_text) is str else None
                if episode_id is None:
                    episode_id = _reference(item, "episode_id", episodes)
                listener_id = item.get("listener_id")
                if type(listener_id) is not str or not 0 < len(listener_id) <= MAX_LISTENER_ID or "\x00" in listener_id:
                    listener_id = _listener_id(item)
                data = item.get("event_data")
                if data is not None:
                    if type(data) is dict and "listened_seconds" in data:
                        _check_listened(data)
                    data = _data(data, "event_data")
                value = item.get("id")
                digits = value.replace("-", "") if type(value) is str and len(value) == 36 else ""
                if len(digits) == 32 and digits.isalnum():  # the canonical form: fast_uuid inlined
                    try:
                        number = int(digits, 16)
                    except ValueError:
                        raise ItemError("id is not a valid UUID") from None
                    event_id = new_object(UUID)
                    set_slot(event_id, "int", number)
                    set_slot(event_id, "is_safe", safe)
                else:
                    event_id = _event_id(value)
                value = item.get("occurred_at")
                try:
                    moment = parse_moment(value) if type(value) is str else None
                except ValueError:
                    moment = None
                if moment is None or moment.tzinfo is None or not earliest <= moment < latest:
                    moment = _occurred_at(value, accepted)
                elif moment.tzinfo is not UTC:
                    moment = moment.astimezone(UTC)
            except ItemError as exc:
                rejected.append({"index": index, "error": str(exc)})
                continue
            named.add(episode_text)
            key = event_id.int
            first = first_seen(key, moment)
            if first is not moment and repeated(key, first, moment):  # stored once
                duplicates += 1
                continue
            rows.append((tenant_id, event_id, episode_id, listener_id, event_type, data, moment))
            indexes.append(index)
        out.duplicates += duplicates
        out.episode_ids.update(episodes[text] for text in named)

    def _attribution(self, items: Iterable[tuple[int, Any]]) -> None:
        out, tenant_id = self.result, self.tenant_id
        first_seen, repeated = self._first.setdefault, self._repeated
        rows, indexes, rejected = out.rows, out.indexes, out.rejected
        duplicates = 0
        for index, item in items:
            try:
                if type(item) is not dict:
                    raise ItemError(_NOT_AN_OBJECT)
                if not item.keys() <= ATTRIBUTION_FIELDS:
                    _unknown(item, ATTRIBUTION_FIELDS)
                attribution_type = item.get("attribution_type")
                if type(attribution_type) is not str or attribution_type not in ATTRIBUTION_TYPES:
                    raise ItemError(_ATTRIBUTION_TYPE)
                campaign_id = _reference(item, "campaign_id", self._campaigns)
                episode_id = None if item.get("episode_id") is None else _reference(item, "episode_id", self._episodes)
                listener_id = _listener_id(item)
                data = item.get("attribution_data")
                if data is not None:
                    if attribution_type == "conversion" and type(data) is dict:
                        _check_conversion(data)
                    data = _data(data, "attribution_data")
                event_id = _event_id(item.get("id"))
                moment = _occurred_at(item.get("occurred_at"), self.accepted)
            except ItemError as exc:
                rejected.append({"index": index, "error": str(exc)})
                continue
            out.campaign_ids.add(campaign_id)
            if episode_id is not None:
                out.episode_ids.add(episode_id)
            key = event_id.int
            first = first_seen(key, moment)
            if first is not moment and repeated(key, first, moment):
                duplicates += 1
                continue
            rows.append((tenant_id, event_id, campaign_id, episode_id, listener_id, attribution_type, data, moment))
            indexes.append(index)
        out.duplicates += duplicates


def validate(
    kind: str, tenant_id: uuid.UUID, items: Iterable[tuple[int, Any]], accepted: AcceptedRange
) -> tuple[Validated, set[uuid.UUID], set[uuid.UUID]]:
    """Check each ``(index, item)``; answers the valid rows and the episode and campaign ids they name
    (the caller refuses those not of this tenant)."""
    checker = Checker(kind, tenant_id, accepted)
    checker.feed(items)
    result = checker.result
    return result, set(result.episode_ids), set(result.campaign_ids)


def drop_unknown_references(
    validated: Validated, kind: str, known_episodes: set[uuid.UUID], known_campaigns: set[uuid.UUID]
) -> Validated:
    """Refuse the rows naming an episode or campaign this tenant does not have (another tenant's
    looks exactly like a missing one)."""
    named = validated.episode_ids or validated.campaign_ids or not validated.rows
    if named and validated.episode_ids <= known_episodes and validated.campaign_ids <= known_campaigns:
        validated.rejected.sort(key=_by_index)  # every reference is known: nothing to refuse
        return validated
    kept = Validated(rejected=list(validated.rejected), duplicates=validated.duplicates)
    for index, row in zip(validated.indexes, validated.rows, strict=True):
        if kind == "listener":
            if row[2] not in known_episodes:
                kept.reject(index, "episode_id: no such episode")
                continue
            kept.episode_ids.add(row[2])
        else:
            if row[2] not in known_campaigns:
                kept.reject(index, "campaign_id: no such campaign")
                continue
            if row[3] is not None and row[3] not in known_episodes:
                kept.reject(index, "episode_id: no such episode")
                continue
            kept.campaign_ids.add(row[2])
            if row[3] is not None:
                kept.episode_ids.add(row[3])
        kept.rows.append(row)
        kept.indexes.append(index)
    kept.rejected.sort(key=_by_index)
    return kept
