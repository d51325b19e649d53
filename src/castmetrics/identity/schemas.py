"""Request and response shapes of identity routes (names as in API.md)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from castmetrics.tenancy.schemas import Name, Slug

Password = Annotated[str, Field(min_length=1, max_length=1024)]
PersonName = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Scope = Literal["ingest", "read", "admin"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignupIn(Strict):
    tenant_name: Name
    tenant_slug: Slug
    email: EmailStr
    password: Password
    name: PersonName


class LoginIn(Strict):
    email: EmailStr
    password: Password


class RefreshIn(Strict):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class TenantBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    slug: str
    name: str
    subscription_tier: str
    time_zone: str = "UTC"


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    email: str
    name: str
    email_verified: bool
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    roles: list[str] = Field(default_factory=list)


class SignupOut(TokenPair):
    tenant: TenantBrief
    user: UserOut


class MeUser(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    email_verified: bool


class ApiKeyBrief(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]


class MeOut(BaseModel):
    user: MeUser | None  # null for an ingest-only API key
    tenant: TenantBrief
    roles: list[str]
    permissions: list[str]
    api_key: ApiKeyBrief | None = None


class EmailIn(Strict):
    email: EmailStr


class TokenIn(Strict):
    token: Annotated[str, Field(min_length=1, max_length=2048)]


class NewPasswordIn(TokenIn):
    password: Password


class InviteIn(Strict):
    email: EmailStr
    name: PersonName
    role_ids: list[uuid.UUID] = Field(default_factory=list, max_length=20)


class UserUpdate(Strict):
    name: PersonName | None = None
    is_active: bool | None = None


class UserRolesIn(Strict):
    role_ids: list[uuid.UUID] = Field(max_length=20)


PermissionName = Annotated[str, StringConstraints(pattern=r"^[a-z_]+:[a-z_]+$", max_length=64)]
RoleName = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]


class RoleIn(Strict):
    name: RoleName
    description: Annotated[str, Field(max_length=500)] = ""
    permissions: list[PermissionName] = Field(default_factory=list, max_length=200)


class RoleUpdate(Strict):
    name: RoleName | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    permissions: list[PermissionName] | None = Field(default=None, max_length=200)


class RoleOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    is_system: bool
    permissions: list[str]
    created_at: datetime


class PermissionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    resource: str
    action: str


class ApiKeyIn(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    scopes: list[Scope] = Field(min_length=1, max_length=3)


class ApiKeyUpdate(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)] | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    user_id: uuid.UUID
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The full key. Shown once: only its hash is stored.")


class VerifiedOut(BaseModel):
    email: str
    email_verified: bool


class UserMetric(BaseModel):
    day: date
    logins: int
    api_calls: int


class UserMetricsOut(BaseModel):
    user_id: uuid.UUID
    items: list[UserMetric]
