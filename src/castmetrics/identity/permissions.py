"""The platform's permissions (resource × action) and the default roles every tenant gets."""

from __future__ import annotations

RESOURCES = (
    "tenant",
    "users",
    "roles",
    "api_keys",
    "podcasts",
    "episodes",
    "sponsors",
    "campaigns",
    "bookings",
    "events",
    "analytics",
    "attribution",
    "workflows",
    "feature_flags",
    "billing",
    "audit_log",
)
ACTIONS = ("create", "read", "update", "delete")
# Beyond CRUD: exporting analytics (CSV and reports) is granted separately.
EXTRA = ("analytics:export",)

ALL_PERMISSIONS: tuple[str, ...] = tuple(f"{r}:{a}" for r in RESOURCES for a in ACTIONS) + EXTRA


def _all(*, except_: frozenset[str] = frozenset()) -> frozenset[str]:
    return frozenset(p for p in ALL_PERMISSIONS if p not in except_ and p.split(":")[0] not in except_)


# Billing stays with the owner: reading roles see everything else, so an admin can grant them.
_READS = frozenset(p for p in ALL_PERMISSIONS if p.endswith(":read") and not p.startswith("billing:"))
_SALES = frozenset(f"{r}:{a}" for r in ("sponsors", "campaigns", "bookings") for a in ACTIONS)

DEFAULT_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "owner": ("Everything, including billing and deleting the tenant.", _all()),
    "admin": (
        "Everything but billing and deleting the tenant.",
        _all(except_=frozenset({"billing", "tenant:delete"})),
    ),
    "sales": (
        "Sponsors, campaigns and bookings; reads analytics.",
        _SALES | {"analytics:read", "podcasts:read", "episodes:read", "attribution:read"},
    ),
    "analyst": ("Reads everything but billing, and exports analytics.", _READS | {"analytics:export"}),
    "viewer": ("Reads everything but billing.", _READS),
}
