"""Credentials: signed access tokens, purpose tokens (verify, reset, invite), refresh tokens, API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cachetools import TTLCache

from castmetrics.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "castmetrics"
API_KEY_PREFIX = "cm_"


def _key(secret: str, purpose: str) -> bytes:
    # One derived key per purpose: a token minted for one use can never verify for another.
    return hmac.new(secret.encode(), f"castmetrics:{purpose}".encode(), hashlib.sha256).digest()


def sign(secret: str, purpose: str, claims: dict[str, Any], lifetime: timedelta) -> str:
    now = datetime.now(UTC)
    payload = {**claims, "typ": purpose, "iss": ISSUER, "iat": now, "exp": now + lifetime}
    return jwt.encode(payload, _key(secret, purpose), algorithm=ALGORITHM)


def verify(secret: str, purpose: str, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, _key(secret, purpose), algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized(f"the {purpose} token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"the {purpose} token is not valid") from exc
    if claims.get("typ") != purpose:
        raise Unauthorized(f"the {purpose} token is not valid")
    return claims


@dataclass(frozen=True)
class AccessClaims:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    # The login session (refresh-token family) the token was issued for: when the session ends (logout,
    # password reset, a stolen refresh token replayed, deactivation) its access tokens stop working too.
    session_id: uuid.UUID | None = None


def issue_access_token(
    secret: str, tenant_id: uuid.UUID, user_id: uuid.UUID, minutes: int, session_id: uuid.UUID | None = None
) -> str:
    claims = {"sub": str(user_id), "tid": str(tenant_id), "jti": secrets.token_hex(8)}
    if session_id is not None:
        claims["sid"] = str(session_id)
    return sign(secret, "access", claims, timedelta(minutes=minutes))


def access_token_session(secret: str, token: str) -> uuid.UUID | None:
    """The login session an access token was issued for, whether or not it has expired (its signature
    is checked): what a dashboard form's CSRF token is bound to."""
    try:
        claims = jwt.decode(
            token, _key(secret, "access"), algorithms=[ALGORITHM], issuer=ISSUER, options={"verify_exp": False}
        )
        return uuid.UUID(claims["sid"]) if claims.get("typ") == "access" and "sid" in claims else None
    except (jwt.PyJWTError, KeyError, ValueError):
        return None


# Access tokens whose signature was checked, with their expiry: a client sends the same token for minutes,
# and a token's claims cannot change; its expiry is checked again on every use.
_VERIFIED: TTLCache[tuple[str, str], tuple[AccessClaims, float]] = TTLCache(maxsize=10_000, ttl=300)


def read_access_token(secret: str, token: str) -> AccessClaims:
    found = _VERIFIED.get((secret, token))
    if found is not None:
        if time.time() < found[1]:
            return found[0]
        raise Unauthorized("the access token has expired")
    claims = verify(secret, "access", token)
    try:
        session_id = uuid.UUID(claims["sid"]) if "sid" in claims else None
        read = AccessClaims(tenant_id=uuid.UUID(claims["tid"]), user_id=uuid.UUID(claims["sub"]), session_id=session_id)
    except (KeyError, ValueError) as exc:
        raise Unauthorized("the access token is not valid") from exc
    _VERIFIED[(secret, token)] = (read, float(claims["exp"]))
    return read


def digest(secret_part: str) -> bytes:
    """Refresh tokens and API keys carry 256 random bits: SHA-256 is the right hash (bcrypt is for
    guessable secrets)."""
    return hashlib.sha256(secret_part.encode()).digest()


@dataclass(frozen=True)
class RefreshParts:
    tenant_id: uuid.UUID
    token_id: uuid.UUID
    secret: str


def new_refresh_token(tenant_id: uuid.UUID, token_id: uuid.UUID) -> tuple[str, str]:
    """The token handed to the client, and the secret part whose digest is stored."""
    secret_part = secrets.token_urlsafe(32)
    return f"{tenant_id}.{token_id}.{secret_part}", secret_part


def parse_refresh_token(token: str) -> RefreshParts:
    try:
        tenant, token_id, secret_part = token.split(".", 2)
        return RefreshParts(uuid.UUID(tenant), uuid.UUID(token_id), secret_part)
    except ValueError as exc:
        raise Unauthorized("the refresh token is not valid") from exc


def new_api_key() -> tuple[str, str]:
    """``cm_<prefix>_<secret>``: the prefix is shown in lists and finds the key; answers (key, prefix)."""
    prefix = base64.b32encode(secrets.token_bytes(5)).decode().lower()
    return f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def api_key_prefix(key: str) -> str | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    prefix, _, rest = key[len(API_KEY_PREFIX) :].partition("_")
    return prefix if len(prefix) == 8 and rest else None


def same_digest(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
