"""Request and response shapes of email preferences, and the categories a user can opt out of."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

Category = Literal["weekly_digest", "campaign_alerts", "product_news"]
CATEGORIES: Final[tuple[Category, ...]] = get_args(Category)

# What a user without a row receives; the table's column defaults say the same.
DEFAULTS: Final[dict[Category, bool]] = {"weekly_digest": True, "campaign_alerts": True, "product_news": False}


class EmailPreferencesOut(BaseModel):
    weekly_digest: bool = Field(description="The weekly summary of downloads, listeners and campaigns.")
    campaign_alerts: bool = Field(description="Pacing and delivery alerts for sponsorship campaigns.")
    product_news: bool = Field(description="Occasional news about Castmetrics itself.")
    updated_at: datetime | None = Field(description="When the user last changed a preference; null: never.")


class EmailPreferencesUpdate(BaseModel):
    """A partial update: only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    weekly_digest: bool | None = None
    campaign_alerts: bool | None = None
    product_news: bool | None = None

    @field_validator("weekly_digest", "campaign_alerts", "product_news", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Omitting a field leaves it as it is; an explicit null would mean nothing, so it is refused.
        if value is None:
            raise ValueError("send true or false, or leave the field out")
        return value

    def changes(self) -> dict[Category, bool]:
        return {category: getattr(self, category) for category in CATEGORIES if category in self.model_fields_set}


class UnsubscribedOut(BaseModel):
    category: Category
    unsubscribed: Literal[True] = True
