"""Pydantic shapes of tenants in and out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

Tier = Literal["free", "pro", "enterprise"]
Status = Literal["active", "suspended", "cancelled"]
Slug = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", strip_whitespace=True
    ),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Domain = Annotated[
    str,
    # Lower-cased before the pattern runs: host names are case-insensitive, stored lower-case.
    BeforeValidator(lambda value: value.strip().lower() if isinstance(value, str) else value),
    StringConstraints(max_length=253, pattern=r"^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"),
]

_ZONES: frozenset[str] | None = None


def validate_time_zone(value: str) -> str:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    if value not in _ZONES:
        raise ValueError(f"{value!r} is not an IANA time zone (such as 'Europe/Berlin' or 'UTC')")
    return value


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    slug: Slug
    domain: Domain | None = None
    subscription_tier: Tier = "free"
    billing_email: EmailStr | None = None
    time_zone: str = "UTC"
    metadata: dict[str, Any] = Field(default_factory=dict)

    _tz = field_validator("time_zone")(validate_time_zone)


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    domain: Domain | None = None
    billing_email: EmailStr | None = None
    time_zone: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else validate_time_zone(value)


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    domain: str | None
    subscription_tier: Tier
    status: Status
    subscription_status: str
    billing_email: str | None
    time_zone: str
    created_at: datetime
    updated_at: datetime
