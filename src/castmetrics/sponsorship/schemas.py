"""Request and response shapes of sponsors, campaigns, their stage history and IO bookings."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from castmetrics.http.fields import Url

# The alphabetic codes of ISO 4217 list one (currencies and funds), as published by SIX, the
# maintenance agency, on 2026-01-01: 178 codes. Amendments since 2024 are in — XCG (replaces ANG),
# ZWG (replaces ZWL), XAD (Arab Accounting Dinar) — and withdrawn codes are out: ANG, BGN (Bulgaria
# adopted the euro on 2026-01-01), CUC, HRK, SLL, ZWL. Update it with each ISO 4217 amendment.
_ISO_4217_LIST_ONE = """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
    MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
    SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
    USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD
    XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
"""
ISO_4217_CODES: frozenset[str] = frozenset(_ISO_4217_LIST_ONE.split())

Stage = Literal["draft", "active", "paused", "completed", "cancelled"]
Placement = Literal["pre_roll", "mid_roll", "post_roll"]
AdFormat = Literal["host_read", "pre_recorded", "programmatic"]
PricingModel = Literal["cpm", "flat"]
BookingStatus = Literal["pending", "confirmed", "delivering", "delivered", "cancelled"]

MAX_AMOUNT = 10**12

Name = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
Text = Annotated[str, Field(max_length=100_000)]
Reason = Annotated[str, StringConstraints(max_length=2000, strip_whitespace=True)]
PromoCode = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
RateMinor = Annotated[
    int, Field(ge=0, le=MAX_AMOUNT, description="The rate in integer minor units of `currency` (cents for USD).")
]
Impressions = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
LookbackDays = Annotated[
    int,
    Field(
        ge=1, le=365,
        description="How many days before a conversion its touchpoints count (DESIGN.md Attribution).",
    ),
]  # fmt: skip


def _iso_currency(code: str) -> str:
    if code not in ISO_4217_CODES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_iso_currency),
    Field(description="An ISO 4217 alphabetic code, such as USD or EUR."),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _ordered(start: date | None, end: date | None, what: str) -> None:
    if start is not None and end is not None and end < start:
        raise ValueError(f"{what} ends before it starts")


# --- sponsors ------------------------------------------------------------------------------------


class SponsorIn(Strict):
    name: Name
    website_url: Url | None = None
    logo_url: Url | None = None


class SponsorUpdate(Strict):
    name: Name | None = None
    website_url: Url | None = None
    logo_url: Url | None = None


class SponsorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    website_url: str | None
    logo_url: str | None
    created_at: datetime
    updated_at: datetime


# --- campaigns -----------------------------------------------------------------------------------


class CampaignIn(Strict):
    name: Name
    sponsor_id: uuid.UUID | None = None
    start_date: date | None = None
    end_date: date | None = None
    description: Text | None = None
    lookback_days: LookbackDays = 30

    @model_validator(mode="after")
    def _dates_in_order(self) -> CampaignIn:
        _ordered(self.start_date, self.end_date, "the campaign")
        return self


class CampaignUpdate(Strict):
    """Any of the fields; the stage changes only through ``POST /v1/campaigns/{id}/transition``."""

    name: Name | None = None
    sponsor_id: uuid.UUID | None = None
    start_date: date | None = None
    end_date: date | None = None
    description: Text | None = None
    lookback_days: LookbackDays | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_stage(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("stage" in data or "stage_changed_at" in data):
            raise ValueError("the stage changes only through POST /v1/campaigns/{id}/transition")
        return data

    @model_validator(mode="after")
    def _dates_in_order(self) -> CampaignUpdate:
        _ordered(self.start_date, self.end_date, "the campaign")
        return self


class CampaignOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    sponsor_id: uuid.UUID | None
    name: str
    description: str | None
    start_date: date | None
    end_date: date | None
    stage: Stage
    stage_changed_at: datetime
    lookback_days: int
    created_at: datetime
    updated_at: datetime
    next_stages: list[Stage] = Field(default_factory=list, description="The stages a transition may go to now.")


class TransitionIn(Strict):
    stage: Stage
    reason: Reason | None = None


class StageChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    from_stage: Stage | None = Field(description="Null for the campaign's creation.")
    to_stage: Stage
    reason: str | None
    actor_type: str
    actor_id: str | None
    changed_at: datetime


# --- bookings ------------------------------------------------------------------------------------


class BookingIn(Strict):
    podcast_id: uuid.UUID
    episode_id: uuid.UUID | None = None
    placement: Placement
    ad_format: AdFormat | None = None
    pricing_model: PricingModel
    rate_minor: RateMinor
    currency: Currency
    booked_impressions: Impressions
    flight_start: date
    flight_end: date
    status: BookingStatus = "pending"
    promo_code: PromoCode | None = None
    vanity_url: Url | None = None
    make_good_of: uuid.UUID | None = Field(default=None, description="The booking of this campaign it makes good.")

    @model_validator(mode="after")
    def _flight_in_order(self) -> BookingIn:
        _ordered(self.flight_start, self.flight_end, "the flight")
        return self


class BookingUpdate(Strict):
    podcast_id: uuid.UUID | None = None
    episode_id: uuid.UUID | None = None
    placement: Placement | None = None
    ad_format: AdFormat | None = None
    pricing_model: PricingModel | None = None
    rate_minor: RateMinor | None = None
    currency: Currency | None = None
    booked_impressions: Impressions | None = None
    flight_start: date | None = None
    flight_end: date | None = None
    status: BookingStatus | None = None
    promo_code: PromoCode | None = None
    vanity_url: Url | None = None
    make_good_of: uuid.UUID | None = None

    @model_validator(mode="after")
    def _flight_in_order(self) -> BookingUpdate:
        _ordered(self.flight_start, self.flight_end, "the flight")
        return self


class BookingWarning(BaseModel):
    code: Literal["inventory_overlap"]
    detail: str
    booking_id: uuid.UUID = Field(description="The other booking of the same podcast and placement.")
    campaign_id: uuid.UUID
    overlap_start: date
    overlap_end: date


class BookingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    campaign_id: uuid.UUID
    podcast_id: uuid.UUID
    episode_id: uuid.UUID | None
    placement: Placement
    ad_format: AdFormat | None
    pricing_model: PricingModel
    rate_minor: int
    currency: str
    booked_impressions: int
    flight_start: date
    flight_end: date
    status: BookingStatus
    promo_code: str | None
    vanity_url: str | None
    make_good_of: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    delivered_impressions: int = Field(
        default=0, description="IAB downloads of the booked episodes inside the flight (docs/measurement.md rule 9)."
    )
    warnings: list[BookingWarning] = Field(
        default_factory=list, description="Other live bookings of the same podcast placement over the same days."
    )


class CampaignEpisodeOut(BaseModel):
    """One booking seen as the seed's ``campaign_episodes`` row: where the campaign runs."""

    booking_id: uuid.UUID
    podcast_id: uuid.UUID
    podcast_name: str
    episode_id: uuid.UUID | None = Field(description="Null for a booking on the whole podcast.")
    episode_title: str | None
    placement: Placement
    flight_start: date
    flight_end: date
    status: BookingStatus


# --- pacing --------------------------------------------------------------------------------------

PacingStatus = Literal["ahead", "on_track", "behind"]
PacingPhase = Literal["upcoming", "in_flight", "ended"]


class BookingPacing(BaseModel):
    """One live booking's delivery against its even-delivery plan (docs/api.md "Pacing")."""

    booking_id: uuid.UUID
    podcast_id: uuid.UUID
    episode_id: uuid.UUID | None = Field(description="Null for a run-of-show booking (every episode of the podcast).")
    placement: Placement
    pricing_model: PricingModel
    currency: str = Field(description="The booking's ISO 4217 currency: the currency of its spend.")
    flight_start: date = Field(description="First UTC day of the flight.")
    flight_end: date = Field(description="Last UTC day of the flight (inclusive).")
    phase: PacingPhase = Field(description="`upcoming` before the flight, `in_flight` during it, `ended` after it.")
    elapsed: float = Field(
        ge=0, le=1,
        description="Fraction of the flight's time (00:00 UTC of the first day to 24:00 UTC of the last) passed at "
        "`as_of`; continuous, so a day under way counts partially.",
    )  # fmt: skip
    booked: int = Field(description="Booked impressions.")
    delivered: int = Field(description="IAB downloads of the booked episode (or podcast) inside the flight so far.")
    expected_to_date: int = Field(description="round(booked × elapsed): what even delivery over the flight gives.")
    projected: int = Field(
        description="Delivery at the flight's end at the current pace: round(delivered / elapsed) in flight (0 at "
        "its very start), `delivered` once ended, 0 before it."
    )
    pace: float | None = Field(description="delivered / expected_to_date; null while expected_to_date is 0.")
    status: PacingStatus = Field(
        description="`ahead` above 110% of expected, `behind` under 90%, else `on_track`; never `behind` in the "
        "flight's first 24 hours, and `on_track` before the flight."
    )
    spend_to_date: float = Field(
        description="Spend so far in major units of `currency`: CPM rate × min(delivered, booked) / 1000, or the flat "
        "fee × elapsed. Exact, so a CPM share may hold a fraction of a minor unit."
    )
    spend_to_date_minor: int = Field(description="`spend_to_date` in integer minor units, rounded half up.")


class CampaignPacingOut(BaseModel):
    """A campaign's delivery pacing: each live (not cancelled) booking and the totals over them."""

    campaign_id: uuid.UUID
    as_of: datetime = Field(description="The instant the pacing was computed at.")
    currency: str | None = Field(
        description="The bookings' currency; when they use several, the most common one (the spend totals are then "
        "over that currency's bookings only). Null when the campaign has no live booking."
    )
    mixed_currencies: bool = Field(description="True when the live bookings use more than one currency.")
    booked: int = Field(description="Sum of the bookings' booked impressions.")
    delivered: int = Field(description="Sum of the bookings' delivered impressions.")
    expected_to_date: int = Field(description="Sum of the bookings' expected impressions to date.")
    projected: int = Field(description="Sum of the bookings' projected impressions.")
    pace: float | None = Field(description="delivered / expected_to_date over the sums; null when expected is 0.")
    status: PacingStatus = Field(
        description="The thresholds of a booking's status (110% / 90%) applied to the sums, whatever the phases."
    )
    spend_to_date: float = Field(description="Sum of the bookings' spend in `currency`, in major units.")
    spend_to_date_minor: int = Field(description="`spend_to_date` in integer minor units, rounded half up.")
    bookings: list[BookingPacing] = Field(description="Each live booking, by flight start.")
