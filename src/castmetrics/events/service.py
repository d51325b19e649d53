"""Event ingestion: validate a batch item by item, store its valid events once, count them.

One batch is one transaction: its valid events are all stored or none are. Duplicates (the same
``id`` and ``occurred_at`` as a stored event, or as an earlier item of the batch) are counted, not
stored again. The monthly quota (402) and the tenant's ingest rate (429) are checked up front and
again, atomically, just before commit.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.auth.principal import TenantRef
from castmetrics.db.session import Database
from castmetrics.db.values import values
from castmetrics.events import partitions, validation, writer
from castmetrics.outbox import service as outbox
from castmetrics.quotas import service as quotas

KINDS = ("listener", "attribution")
MAX_BATCH = 10_000


@dataclass
class IngestResult:
    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


# Which of the episodes and campaigns a batch names exist (in this tenant: RLS scopes both tables), in one
# round trip. Events name them by id only; their tables belong to catalog and sponsorship, read here.
_KNOWN_REFERENCES = text(
    """
    SELECT 'episode' AS kind, id FROM episodes WHERE id = ANY(CAST(:episodes AS uuid[]))
    UNION ALL
    SELECT 'campaign', id FROM campaigns WHERE id = ANY(CAST(:campaigns AS uuid[]))
    """
)


async def _known(
    session: AsyncSession, episode_ids: set[uuid.UUID], campaign_ids: set[uuid.UUID]
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """(known episode ids, known campaign ids) among those given."""
    if not episode_ids and not campaign_ids:
        return set(), set()
    rows = await session.execute(_KNOWN_REFERENCES, {"episodes": list(episode_ids), "campaigns": list(campaign_ids)})
    known: dict[str, set[uuid.UUID]] = {"episode": set(), "campaign": set()}
    for row in rows:
        known[row.kind].add(row.id)
    return known["episode"], known["campaign"]


async def note_days(
    session: AsyncSession, tenant_id: uuid.UUID, days: Iterable[date] | Mapping[date, int], kind: str = "listener"
) -> None:
    """Log the days a committed batch wrote, so the rollup refresh brings them up to date (and queries read
    those days from raw rows until it has). ``days`` may map each day to the rows the batch stored on it:
    the refresh bounds the work of one cycle by these counts. The log rows take the transaction's batch id
    (``writer.write``); noted outside a batch, they ask for the whole day to be recounted."""
    counts = dict(days) if isinstance(days, Mapping) else dict.fromkeys(days)
    day_list = sorted(counts)
    if day_list:
        rows, params = values(
            [(tenant_id, day, kind, counts[day]) for day in day_list], ("uuid", "date", "text", "integer")
        )
        await session.execute(
            text(f"INSERT INTO rollup_invalidations (tenant_id, day, kind, events) VALUES {rows}"), params
        )


async def _conversions(
    session: AsyncSession, tenant_id: uuid.UUID, rows: list[tuple[Any, ...]], positions: list[int] | None
) -> None:
    """``conversion.recorded`` through the outbox for each conversion stored by this batch."""
    stored = rows if positions is None else [rows[i] for i in positions]
    for row in stored:
        _tenant, event_id, campaign_id, episode_id, listener_id, attribution_type, data, occurred_at = row
        if attribution_type != "conversion":
            continue
        details = orjson.loads(data) if data else {}
        await outbox.add_event(
            session,
            tenant_id=tenant_id,
            event_type="conversion.recorded",
            payload={
                "event_id": str(event_id),
                "campaign_id": str(campaign_id),
                "episode_id": str(episode_id) if episode_id else None,
                "listener_id": listener_id,
                "revenue": details.get("revenue"),
                "currency": details.get("currency"),
                "occurred_at": occurred_at.astimezone(UTC).isoformat(),
            },
        )


def accepted_range(retention_days: int, now: datetime | None = None) -> partitions.AcceptedRange:
    """The span of ``occurred_at`` accepted now: the retention behind, a day ahead."""
    return partitions.AcceptedRange.at(now or partitions.utc_now(), retention_days)


async def ingest(
    session: AsyncSession,
    tenant: TenantRef,
    kind: str,
    items: Iterable[tuple[int, Any]],
    *,
    db: Database,
    retention_days: int,
    enforce_limits: bool = True,
    now: datetime | None = None,
    pre_rejected: list[dict[str, Any]] | None = None,
) -> IngestResult:
    """Store a batch of ``(index, item)`` in ``session``'s transaction (acting for ``tenant``).

    ``db`` serves the partition DDL, which runs in its own short transaction. ``enforce_limits``
    false (the operator's bulk import) still counts usage but refuses nothing for quota or rate."""
    checked = check(kind, tenant.id, items, retention_days=retention_days, now=now)
    return await store(session, tenant, kind, checked, db=db, enforce_limits=enforce_limits, pre_rejected=pre_rejected)


def check(
    kind: str,
    tenant_id: uuid.UUID,
    items: Iterable[tuple[int, Any]],
    *,
    retention_days: int,
    now: datetime | None = None,
) -> validation.Validated:
    """The first half of ``ingest``, no database needed: each ``(index, item)`` validated."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    checker = validation.Checker(kind, tenant_id, accepted_range(retention_days, now))
    checker.feed(items)
    return checker.result


async def store(
    session: AsyncSession,
    tenant: TenantRef,
    kind: str,
    checked: validation.Validated,
    *,
    db: Database,
    enforce_limits: bool = True,
    pre_rejected: list[dict[str, Any]] | None = None,
) -> IngestResult:
    """The second half of ``ingest``: store a batch already validated (``validation.Checker``, which
    the bulk import runs on its next batch while this one is written)."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    known_episodes, known_campaigns = await _known(session, checked.episode_ids, checked.campaign_ids)
    checked = validation.drop_unknown_references(checked, kind, known_episodes, known_campaigns)
    # A new list: ``checked`` is left as it came, so a batch can be stored again after a rollback.
    rejected = sorted((pre_rejected or []) + checked.rejected, key=lambda r: r["index"])
    rows = checked.rows
    if enforce_limits and rows:
        await quotas.check_events_room(session, tenant, len(rows))
        await quotas.peek_ingest_tokens(session, tenant, len(rows))
    by_day = writer.group_by_day(rows)
    await partitions.ensure_days(db, by_day)
    written = await writer.write(session, kind, rows, by_day=by_day)
    if written.accepted:
        if kind == "listener":
            if written.new_positions is None:
                await note_days(session, tenant.id, {day: len(day_rows) for day, day_rows in by_day.items()})
            else:
                await note_days(
                    session, tenant.id, Counter(validation.utc_day(rows[i][-1]) for i in written.new_positions)
                )
        else:
            await _conversions(session, tenant.id, rows, written.new_positions)
    await quotas.add_events(session, tenant, written.accepted, enforce=enforce_limits)
    if enforce_limits:
        await quotas.take_ingest_tokens(session, tenant, len(rows))
    return IngestResult(
        accepted=written.accepted,
        duplicates=checked.duplicates + len(rows) - written.accepted,
        rejected=rejected,
    )
