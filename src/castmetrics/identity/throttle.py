"""Slowing, then refusing, repeated failed logins per email and per client address."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.errors import RateLimited

WINDOW_SECONDS = 15 * 60
SLOW_AFTER = 5  # failures in the window before each attempt is delayed
BLOCK_AFTER = 10  # failures in the window before attempts are refused (429) until the window ends
MAX_DELAY_SECONDS = 4.0


def keys_for(email: str, client_addr: str | None, realm: str = "user") -> list[str]:
    """Hashed keys: the table never holds an email or address in the clear. Each realm (tenant users,
    platform admins) counts its own failures, so a success in one never clears the other's count."""
    keys = [f"{realm}:email:" + hashlib.sha256(email.strip().casefold().encode()).hexdigest()]
    if client_addr:
        keys.append(f"{realm}:addr:" + hashlib.sha256(client_addr.encode()).hexdigest())
    return keys


async def before_attempt(session: AsyncSession, keys: list[str]) -> float:
    """Refuse while a key is blocked; otherwise answer how long to wait before trying the password
    (longer the more recent failures there are). The caller waits *after* its transaction ends, so a
    delayed attempt never holds a database connection."""
    rows = (
        await session.execute(
            text(
                "SELECT failures, blocked_until, window_started_at FROM auth_throttle "
                "WHERE key = ANY(:keys) AND window_started_at > now() - make_interval(secs => :window)"
            ),
            {"keys": keys, "window": WINDOW_SECONDS},
        )
    ).all()
    now = datetime.now(UTC)
    blocked = [r.blocked_until for r in rows if r.blocked_until is not None and r.blocked_until > now]
    if blocked:
        retry_after = math.ceil((max(blocked) - now).total_seconds())
        raise RateLimited("too many failed logins: try again later", retry_after=max(retry_after, 1))
    failures = max((r.failures for r in rows), default=0)
    if failures >= SLOW_AFTER:
        return float(min(MAX_DELAY_SECONDS, 0.25 * 2 ** (failures - SLOW_AFTER)))
    return 0.0


async def record_failure(session: AsyncSession, keys: list[str]) -> None:
    """Count a failure for each key; a window that has run out starts again."""
    await session.execute(
        text(
            """
            INSERT INTO auth_throttle AS t (key, failures, window_started_at)
            SELECT k, 1, now() FROM unnest(CAST(:keys AS text[])) AS k
            ON CONFLICT (key) DO UPDATE SET
                failures = CASE WHEN t.window_started_at > now() - make_interval(secs => :window)
                                THEN t.failures + 1 ELSE 1 END,
                window_started_at = CASE WHEN t.window_started_at > now() - make_interval(secs => :window)
                                         THEN t.window_started_at ELSE now() END,
                blocked_until = CASE WHEN t.window_started_at > now() - make_interval(secs => :window)
                                      AND t.failures + 1 >= :block_after
                                     THEN now() + make_interval(secs => :window) ELSE NULL END
            """
        ),
        {"keys": keys, "window": WINDOW_SECONDS, "block_after": BLOCK_AFTER},
    )


async def record_success(session: AsyncSession, email_key: str) -> None:
    """A successful login clears its email's count (the address keeps its own)."""
    await session.execute(text("DELETE FROM auth_throttle WHERE key = :key"), {"key": email_key})
