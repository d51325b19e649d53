"""Slowing, then refusing, repeated login attempts per (account, client address) and per address.

Each attempt is counted atomically *before* its password is checked, so parallel guesses cannot all slip
through between a read and a write: past the limit, the password is not even looked at. Counting per
(account, address) rather than per account means a guesser locks out only themselves: the account's owner,
from another address, still gets in, and other accounts behind the guesser's address (a NAT, an office)
are only refused when that address alone has failed far more often.
"""

from __future__ import annotations

import hashlib
import math

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.errors import RateLimited

WINDOW_SECONDS = 15 * 60
# Per (account, address): attempts in the window before each one is delayed, and before they are refused.
SLOW_AFTER = 5
BLOCK_AFTER = 10
# Per address, whatever the account: far higher, so a shared address is not refused for one guesser.
ADDRESS_SLOW_AFTER = 20
ADDRESS_BLOCK_AFTER = 100
MAX_DELAY_SECONDS = 4.0

_PAIR, _ADDRESS = "pair", "addr"

# Adds one attempt to each key (a window that has run out starts again) and answers the counts.
_COUNT = text(
    """
    INSERT INTO auth_throttle AS t (key, failures, window_started_at)
    SELECT k, 1, now() FROM unnest(CAST(:keys AS text[])) AS k
    ON CONFLICT (key) DO UPDATE SET
        failures = CASE WHEN t.window_started_at > now() - make_interval(secs => :window)
                        THEN t.failures + 1 ELSE 1 END,
        window_started_at = CASE WHEN t.window_started_at > now() - make_interval(secs => :window)
                                 THEN t.window_started_at ELSE now() END
    RETURNING key, failures,
              GREATEST(0, EXTRACT(EPOCH FROM window_started_at + make_interval(secs => :window) - now())) AS left
    """
)


def keys_for(email: str, client_addr: str | None, realm: str = "user") -> list[str]:
    """Hashed keys (the table never holds an email or address in the clear): the (account, address) pair
    first, then the address. Each realm (tenant users, platform admins) counts apart."""
    account = email.strip().casefold()
    keys = [f"{realm}:{_PAIR}:" + hashlib.sha256(f"{account}\0{client_addr or ''}".encode()).hexdigest()]
    if client_addr:
        keys.append(f"{realm}:{_ADDRESS}:" + hashlib.sha256(client_addr.encode()).hexdigest())
    return keys


def _limits(key: str) -> tuple[int, int]:
    return (ADDRESS_SLOW_AFTER, ADDRESS_BLOCK_AFTER) if f":{_ADDRESS}:" in key else (SLOW_AFTER, BLOCK_AFTER)


async def attempt(session: AsyncSession, keys: list[str]) -> float:
    """Count this attempt against every key, then refuse it (429) when a key is past its limit, or answer
    how long to wait before checking the password (longer the more attempts came before). The caller
    waits *after* its transaction ends, so a delayed attempt never holds a database connection."""
    rows = (await session.execute(_COUNT, {"keys": keys, "window": WINDOW_SECONDS})).all()
    delay = 0.0
    for row in rows:
        slow_after, block_after = _limits(row.key)
        if row.failures > block_after:
            raise RateLimited("too many failed logins: try again later", retry_after=max(math.ceil(row.left), 1))
        before = row.failures - 1
        if before >= slow_after:
            delay = max(delay, min(MAX_DELAY_SECONDS, 0.25 * 2 ** (before - slow_after)))
    return delay


async def record_failure(session: AsyncSession, keys: list[str]) -> None:
    """Count failures that happened elsewhere (an attempt already counts itself)."""
    await session.execute(_COUNT, {"keys": keys, "window": WINDOW_SECONDS})


async def record_success(session: AsyncSession, keys: list[str]) -> None:
    """A successful login clears its (account, address) count and takes its own attempt back from the
    address's count (the address keeps its failures)."""
    await session.execute(text("DELETE FROM auth_throttle WHERE key = :key"), {"key": keys[0]})
    if len(keys) > 1:
        await session.execute(
            text("UPDATE auth_throttle SET failures = GREATEST(failures - 1, 0) WHERE key = ANY(:keys)"),
            {"keys": keys[1:]},
        )
