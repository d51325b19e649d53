"""The tier table of DESIGN.md as one module other domains call before they add what is counted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.auth.principal import TenantRef
from castmetrics.errors import QuotaExceeded, RateLimited
from castmetrics.outbox import service as outbox

UNLIMITED = None

# Limits per tier; None is unlimited. A tenant's metadata may override: {"quotas": {"users": 10}}.
# ``emails_per_day`` counts the emails workflows send (since midnight UTC); the platform's own mail
# (verification, password reset, invitations) is limited per address instead.
TIER_LIMITS: dict[str, dict[str, int | None]] = {
    "free": {
        "podcasts": 3,
        "users": 3,
        "events_per_month": 100_000,
        "workflows": 2,
        "ingest_rate": 200,
        "emails_per_day": 100,
    },  # fmt: skip
    "pro": {
        "podcasts": 50,
        "users": 25,
        "events_per_month": 10_000_000,
        "workflows": 50,
        "ingest_rate": 5_000,
        "emails_per_day": 5_000,
    },  # fmt: skip
    "enterprise": {
        "podcasts": UNLIMITED,
        "users": UNLIMITED,
        "events_per_month": UNLIMITED,
        "workflows": UNLIMITED,
        "ingest_rate": 50_000,
        "emails_per_day": UNLIMITED,
    },  # fmt: skip
}
# Quotas refused with 402 when full (ingest_rate is a token bucket, answered with 429 elsewhere).
COUNTED = ("podcasts", "users", "events_per_month", "workflows", "emails_per_day")
# The period a quota's thresholds are noted once in (the month, unless the quota is per day).
DAILY = frozenset({"emails_per_day"})
THRESHOLDS = (80, 100)

# How each counted quota's usage is measured (in the tenant's transaction, so RLS scopes it). Tables
# that later domains create are counted once they exist.
USAGE_SQL: dict[str, tuple[str, str]] = {
    "users": ("users", "SELECT count(*) FROM users WHERE is_active"),
    "podcasts": ("podcasts", "SELECT count(*) FROM podcasts"),
    "workflows": ("workflows", "SELECT count(*) FROM workflows"),
    "events_per_month": (
        "usage_monthly",
        "SELECT coalesce(sum(events), 0) FROM usage_monthly "
        "WHERE month = date_trunc('month', now() AT TIME ZONE 'UTC')::date",
    ),
    # Today's (UTC) workflow emails; midnight is turned back into a timestamptz so the session's time
    # zone cannot move it.
    "emails_per_day": (
        "emails",
        "SELECT count(*) FROM emails WHERE kind = 'workflow' "
        "AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    ),
}


def limit_for(tenant: TenantRef, quota: str) -> int | None:
    overrides: Any = (tenant.metadata_ or {}).get("quotas", {})
    if isinstance(overrides, dict) and quota in overrides:
        value = overrides[quota]
        return None if value is None else int(value)
    return TIER_LIMITS.get(tenant.subscription_tier, TIER_LIMITS["free"])[quota]


async def usage(session: AsyncSession, quota: str) -> int:
    table, query = USAGE_SQL[quota]
    exists = (await session.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table})).scalar_one()
    if not exists:
        return 0
    return int((await session.execute(text(query))).scalar_one())


def current_period() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def period_of(quota: str) -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d") if quota in DAILY else current_period()


async def _note_thresholds(session: AsyncSession, tenant: TenantRef, quota: str, limit: int, used: int) -> None:
    """Emit ``quota.threshold_reached`` the first time in a period that usage reaches 80% and 100%."""
    period = period_of(quota)
    for threshold in THRESHOLDS:
        if used * 100 < limit * threshold:
            continue
        inserted = await session.execute(
            text(
                "INSERT INTO quota_thresholds (tenant_id, quota, period, threshold) "
                "VALUES (:t, :q, :p, :th) ON CONFLICT DO NOTHING RETURNING 1"
            ),
            {"t": tenant.id, "q": quota, "p": period, "th": threshold},
        )
        if inserted.first() is not None:
            await outbox.add_event(
                session,
                tenant_id=tenant.id,
                event_type="quota.threshold_reached",
                payload={
                    "quota": quota,
                    "threshold": threshold,
                    "limit": limit,
                    "usage": used,
                    "period": period,
                },
            )


async def ensure_room(session: AsyncSession, tenant: TenantRef, quota: str, adding: int = 1) -> None:
    """Refuse (402) when ``adding`` more would pass the limit; otherwise note the thresholds the
    addition reaches. Call it in the transaction that adds, so a rollback takes the event back."""
    limit = limit_for(tenant, quota)
    if limit is UNLIMITED:
        return
    # Serialises concurrent additions to one tenant's quota until this transaction ends, so two
    # requests cannot both see room for the last slot.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"quota:{tenant.id}:{quota}"})
    used = await usage(session, quota)
    if used + adding > limit:
        raise QuotaExceeded(quota, limit, used)
    await _note_thresholds(session, tenant, quota, limit, used + adding)


@dataclass(frozen=True)
class QuotaUsage:
    limit: int | None
    usage: int


async def report(session: AsyncSession, tenant: TenantRef) -> dict[str, Any]:
    """Usage against every quota for ``GET /v1/tenant/usage``."""
    quotas = {quota: {"limit": limit_for(tenant, quota), "usage": await usage(session, quota)} for quota in COUNTED}
    return {
        "subscription_tier": tenant.subscription_tier,
        "period": current_period(),
        "quotas": quotas,
        "ingest_rate_per_second": limit_for(tenant, "ingest_rate"),
    }


# --- events: the monthly quota and the ingest token bucket -------------------------------------------

# The bucket holds at least one full batch, so a single batch is never refused for its size alone.
MIN_BURST = 10_000


async def check_events_room(session: AsyncSession, tenant: TenantRef, adding: int) -> None:
    """Refuse (402) up front when ``adding`` events would pass this month's quota."""
    limit = limit_for(tenant, "events_per_month")
    if limit is UNLIMITED or adding == 0:
        return
    used = await usage(session, "events_per_month")
    if used + adding > limit:
        raise QuotaExceeded("events_per_month", limit, used)


async def add_events(session: AsyncSession, tenant: TenantRef, added: int, *, enforce: bool = True) -> int:
    """Count ``added`` accepted events to this month; with ``enforce``, refuse (402, so the caller's
    transaction rolls back) when a concurrent batch took the room first. Answers the month's usage."""
    if added == 0:
        return await usage(session, "events_per_month")
    used = int(
        (
            await session.execute(
                text(
                    "INSERT INTO usage_monthly AS u (tenant_id, month, events) "
                    "VALUES (:t, date_trunc('month', now() AT TIME ZONE 'UTC')::date, :n) "
                    "ON CONFLICT (tenant_id, month) DO UPDATE SET events = u.events + EXCLUDED.events "
                    "RETURNING events"
                ),
                {"t": tenant.id, "n": added},
            )
        ).scalar_one()
    )
    limit = limit_for(tenant, "events_per_month")
    if limit is not UNLIMITED:
        if enforce and used > limit:
            raise QuotaExceeded("events_per_month", limit, used - added)
        await _note_thresholds(session, tenant, "events_per_month", limit, used)
    return used


def ingest_rate(tenant: TenantRef) -> int | None:
    return limit_for(tenant, "ingest_rate")


def _bucket(rate: int) -> int:
    return max(rate, MIN_BURST)


def _retry_after(missing: float, rate: int) -> int:
    return max(1, int(-(-missing // max(rate, 1))))


async def peek_ingest_tokens(session: AsyncSession, tenant: TenantRef, wanted: int) -> None:
    """Refuse (429) before any work when the bucket plainly lacks ``wanted`` tokens."""
    rate = ingest_rate(tenant)
    if rate is None:
        return
    tokens = (
        await session.execute(
            text(
                "SELECT least(:cap, tokens + :rate * extract(epoch FROM clock_timestamp() - refilled_at)) "
                "FROM ingest_buckets"
            ),
            {"cap": _bucket(rate), "rate": rate},
        )
    ).scalar_one_or_none()
    if tokens is not None and tokens < wanted:
        raise RateLimited(
            f"the ingest rate of {rate} events/s is exceeded", retry_after=_retry_after(wanted - tokens, rate)
        )


async def take_ingest_tokens(session: AsyncSession, tenant: TenantRef, wanted: int) -> None:
    """Take ``wanted`` tokens from the tenant's bucket (refilled at the tier's rate), or refuse with
    429 and ``Retry-After``. Call it last in the ingesting transaction: the row lock lasts to commit."""
    rate = ingest_rate(tenant)
    if rate is None or wanted == 0:
        return
    cap = _bucket(rate)
    # The database's clock, read first and bound as a value: Citus allows only immutable expressions in the
    # DO UPDATE of a distributed table.
    now = (await session.execute(text("SELECT clock_timestamp()"))).scalar_one()
    tokens = float(
        (
            await session.execute(
                text(
                    "INSERT INTO ingest_buckets AS b (tenant_id, tokens, refilled_at) "
                    "VALUES (:t, :cap - :n, CAST(:now AS timestamptz)) "
                    "ON CONFLICT (tenant_id) DO UPDATE SET "
                    "tokens = least(:cap, b.tokens + :rate * extract(epoch FROM CAST(:now AS timestamptz) - "
                    "b.refilled_at)) - :n, refilled_at = CAST(:now AS timestamptz) "
                    "RETURNING tokens"
                ),
                {"t": tenant.id, "cap": cap, "n": wanted, "rate": rate, "now": now},
            )
        ).scalar_one()
    )
    if tokens < 0:
        raise RateLimited(f"the ingest rate of {rate} events/s is exceeded", retry_after=_retry_after(-tokens, rate))
