"""Request and response shapes of feature flags, for tenants and for the platform admin."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

FLAG_NAME_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
FlagName = Annotated[str, StringConstraints(pattern=FLAG_NAME_PATTERN)]
Description = Annotated[str, Field(max_length=500)]
# A flag named in a path: a malformed name is a 422, a well-formed unknown one a 404.
FlagNamePath = Annotated[str, Path(pattern=FLAG_NAME_PATTERN, description="The flag's name.")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OverrideIn(Strict):
    enabled: bool = Field(description="The tenant's value, whatever the global default.")


class FlagValue(BaseModel):
    name: str
    enabled: bool = Field(description="The effective value for the tenant.")


class FlagCreate(Strict):
    name: FlagName
    description: Description = ""
    enabled: bool = Field(default=False, description="The global default for tenants without an override.")


class FlagUpdate(Strict):
    description: Description | None = None
    enabled: bool | None = None


class FlagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
