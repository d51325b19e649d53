"""Who acts (``Actor``) and the request's principal: the user or API key, the tenant, and what they may do.

A principal carries plain, immutable snapshots of the tenant, user and key rows taken when the request
was authenticated, never ORM objects: a service that changes one of those rows loads it itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, an API key, a platform admin, or the system itself (CLI, jobs)."""

    type: str
    id: str | None = None

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls("system", name)


class TenantRef(Protocol):
    """What services read of a tenant: a ``TenantContext`` or the tenant's ORM row."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def slug(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def subscription_tier(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def metadata_(self) -> dict[str, Any]: ...


class UserRef(Protocol):
    """What services read of a user: a ``UserContext`` or the user's ORM row."""

    @property
    def tenant_id(self) -> uuid.UUID: ...
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def email_verified(self) -> bool: ...


@dataclass(frozen=True)
class TenantContext:
    """The tenant a request acts for, as its row stood when the request began."""

    id: uuid.UUID
    name: str
    slug: str
    domain: str | None
    subscription_tier: str
    status: str
    subscription_status: str
    billing_email: str | None
    time_zone: str
    metadata_: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UserContext:
    """The acting user (an API key acts as its creator)."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    email: str
    name: str
    email_verified: bool
    is_active: bool


@dataclass(frozen=True)
class ApiKeyContext:
    """The API key a request came with, if any."""

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]


@dataclass
class Principal:
    """Who is acting, for which tenant, with what: built once per request by the auth dependency,
    with the request's tenant transaction (``session``)."""

    session: AsyncSession
    tenant: TenantContext
    user: UserContext
    roles: list[str]
    permissions: frozenset[str]
    api_key: ApiKeyContext | None = None

    @property
    def actor(self) -> Actor:
        if self.api_key is not None:
            return Actor("api_key", str(self.api_key.id))
        return Actor("user", str(self.user.id))

    def has(self, permission: str) -> bool:
        return permission in self.permissions
