"""Request and response shapes of the platform admin: login, tenants across the platform."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from castmetrics.identity.schemas import Password, PersonName
from castmetrics.tenancy.schemas import Status, Tier


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdminLoginIn(Strict):
    email: EmailStr
    password: Password


class AdminCreate(Strict):
    """What ``castmetrics admin create`` takes."""

    email: EmailStr
    name: PersonName
    password: Password


class AdminToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")


class AdminTenantUpdate(Strict):
    status: Status | None = Field(default=None, description="active, suspended or cancelled.")
    subscription_tier: Tier | None = Field(default=None, description="free, pro or enterprise.")
