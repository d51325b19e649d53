"""API-key scopes: what each may do, intersected with its creator's permissions."""

from __future__ import annotations

SCOPES = ("ingest", "read", "admin")


def scope_allows(scope: str, permission: str) -> bool:
    if scope == "admin":
        return True
    if scope == "read":
        return permission.endswith(":read")
    if scope == "ingest":
        return permission == "events:create"
    return False


def effective_permissions(user_permissions: frozenset[str], scopes: list[str] | None) -> frozenset[str]:
    """An API key (``scopes``) acts with its creator's permissions, narrowed by its scopes; a user's
    own credentials (``None``) with all of them."""
    if scopes is None:
        return user_permissions
    return frozenset(p for p in user_permissions if any(scope_allows(s, p) for s in scopes))
