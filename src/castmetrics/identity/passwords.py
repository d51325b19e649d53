"""Password hashing (bcrypt) and the password policy."""

from __future__ import annotations

import asyncio

import bcrypt
from zxcvbn import zxcvbn

from castmetrics.errors import Invalid

MIN_LENGTH = 10
MAX_LENGTH = 128
MIN_SCORE = 3  # zxcvbn 0–4: "safely unguessable" and up
BCRYPT_ROUNDS = 12

# Compared against when no user matches, so a missing account costs the same time as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"castmetrics-no-such-user", bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def check_policy(password: str, *, email: str, name: str) -> None:
    """Refuse weak passwords with a reason the user can act on."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise Invalid(f"the password must be {MIN_LENGTH} to {MAX_LENGTH} characters long", field="password")
    lowered = password.casefold()
    local_part = email.split("@", 1)[0].casefold()
    if lowered in {email.casefold(), name.casefold(), local_part}:
        raise Invalid("the password must not be your email address or name", field="password")
    result = zxcvbn(password, user_inputs=[email, name, local_part, "castmetrics", "podcast"])
    if result["score"] < MIN_SCORE:
        hint = result["feedback"].get("warning") or "add more words or characters that are hard to guess"
        raise Invalid(f"the password is too easy to guess: {hint}", field="password")


def _bcrypt_input(password: str) -> bytes:
    # bcrypt reads at most 72 bytes (and bcrypt 5 refuses more); 128 characters of UTF-8 can exceed it.
    return password.encode()[:72]


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(rounds)).decode()


def _verify(password: str, hashed: str | None) -> bool:
    candidate = _bcrypt_input(password)
    if hashed is None:
        bcrypt.checkpw(candidate, _DUMMY_HASH.encode())
        return False
    return bcrypt.checkpw(candidate, hashed.encode())


async def hash_password(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """bcrypt at 12 rounds costs ~0.2 s of CPU: run it off the event loop."""
    return await asyncio.to_thread(_hash, password, rounds)


async def verify_password(password: str, hashed: str | None) -> bool:
    return await asyncio.to_thread(_verify, password, hashed)
