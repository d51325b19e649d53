"""Sponsor reports: one campaign's delivery, pacing and attribution gathered for JSON, CSV and PDF, and
the signed, expiring, revocable links that open a report without a login."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import jwt
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.attribution import service as attribution
from castmetrics.attribution.schemas import MODELS, Model
from castmetrics.audit import service as audit
from castmetrics.auth import tokens
from castmetrics.auth.principal import Actor
from castmetrics.catalog import service as catalog
from castmetrics.db.repository import Repository
from castmetrics.db.session import Database, own_rows
from castmetrics.errors import DomainError, NotFound, Unauthorized
from castmetrics.reports.models import ReportLink
from castmetrics.reports.schemas import (
    ModelTotals,
    ReportBooking,
    ReportCampaign,
    ReportDay,
    ReportLinkIn,
    ReportOut,
    ReportSponsor,
)
from castmetrics.sponsorship import pacing
from castmetrics.sponsorship import service as sponsorship
from castmetrics.sponsorship.models import Booking, Campaign, Sponsor
from castmetrics.sponsorship.schemas import CampaignPacingOut
from castmetrics.tenancy.models import Tenant

# The purpose the link tokens are signed for: its own derived key, so no other token verifies here.
TOKEN_PURPOSE = "report"
LINK_FIELDS = ("campaign_id", "model", "lookback_days", "expires_at", "revoked_at")
# The daily table stops after this many days: a flight of years would otherwise make a report of
# thousands of rows and an unreadable chart.
MAX_REPORT_DAYS = 1000
NO_LINK = "no such report link"

_links = Repository(ReportLink, moment=ReportLink.created_at)


class LinkExpired(DomainError):
    """The report link's time is up (410 Gone)."""

    code = "gone"
    title = "Gone"


@dataclass(frozen=True)
class LinkClaims:
    tenant_id: uuid.UUID
    link_id: uuid.UUID
    campaign_id: uuid.UUID


# --- the report ----------------------------------------------------------------------------------


def _expected_on(day: date, pacing_out: CampaignPacingOut) -> float:
    """Even delivery on ``day``: each booking flying then contributes its booked impressions divided by
    its flight's days."""
    return sum(
        b.booked / ((b.flight_end - b.flight_start).days + 1)
        for b in pacing_out.bookings
        if b.flight_start <= day <= b.flight_end
    )


def _report_days(
    flight: tuple[date | None, date | None], conversion_days: Sequence[date], first: date | None, last: date | None
) -> list[date]:
    """The days of the daily table: from the first flight or conversion day to the last, inside the
    requested range, at most ``MAX_REPORT_DAYS`` of them."""
    starts = [d for d in (flight[0], min(conversion_days, default=None)) if d is not None]
    ends = [d for d in (flight[1], max(conversion_days, default=None)) if d is not None]
    if not starts or not ends:
        return []
    begin = max(min(starts), first) if first else min(starts)
    finish = min(max(ends), last) if last else max(ends)
    finish = min(finish, begin + timedelta(days=MAX_REPORT_DAYS - 1))
    return [begin + timedelta(days=n) for n in range((finish - begin).days + 1)]


async def _named_bookings(session: AsyncSession, pacing_out: CampaignPacingOut) -> list[ReportBooking]:
    podcasts, episodes = await catalog.names(
        session,
        (b.podcast_id for b in pacing_out.bookings),
        (b.episode_id for b in pacing_out.bookings if b.episode_id is not None),
    )
    return [
        ReportBooking(
            booking_id=b.booking_id,
            podcast_id=b.podcast_id,
            podcast_name=podcasts.get(b.podcast_id, ""),
            episode_id=b.episode_id,
            episode_title=episodes.get(b.episode_id) if b.episode_id is not None else None,
        )
        for b in pacing_out.bookings
    ]


async def build_report(
    session: AsyncSession,
    campaign: Campaign,
    *,
    model: Model = "last_touch",
    lookback_days: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> ReportOut:
    """The campaign's sponsor report: its pacing (as the pacing route answers it), the five models
    compared (as the compare route answers them) with ``model`` in full, and a daily table of
    delivered and expected impressions with that model's conversions, revenue and spend.
    ``start`` / ``end`` bound the conversion times counted, ``[start, end)``, as in attribution."""
    now = now or datetime.now(UTC)
    options = attribution.Options(lookback_days=lookback_days, start=start, end=end)
    sponsor = None
    if campaign.sponsor_id is not None:
        sponsor = await session.scalar(select(Sponsor).where(Sponsor.id == campaign.sponsor_id))
    pacing_out = await pacing.campaign_pacing(session, campaign, now=now)
    compared = await attribution.compare(session, campaign, options)
    chosen = next(answer for answer in compared.models if answer.model == model)

    booking_ids = [b.booking_id for b in pacing_out.bookings]
    bookings: list[Booking] = []
    if booking_ids:
        rows = await session.scalars(
            select(Booking).where(Booking.campaign_id == campaign.id, Booking.id.in_(booking_ids))
        )
        bookings = list(rows.all())
    delivered: dict[date, int] = defaultdict(int)
    for by_day in (await pacing.delivery_by_day(session, bookings)).values():
        for day, impressions in by_day.items():
            delivered[day] += impressions
    returns = {d.day: d for d in chosen.days}

    flight_start = min((b.flight_start for b in pacing_out.bookings), default=campaign.start_date)
    flight_end = max((b.flight_end for b in pacing_out.bookings), default=campaign.end_date)
    days = []
    for day in _report_days((flight_start, flight_end), sorted(returns), options.first_day, options.last_day):
        found = returns.get(day)
        days.append(
            ReportDay(
                day=day,
                delivered=delivered.get(day, 0),
                expected=_expected_on(day, pacing_out),
                conversions=found.conversions if found else 0.0,
                revenue=found.revenue if found else 0.0,
                spend=found.spend if found else 0.0,
            )
        )
    return ReportOut(
        as_of=now,
        campaign=ReportCampaign.model_validate(campaign),
        sponsor=ReportSponsor.model_validate(sponsor) if sponsor is not None else None,
        model=model,
        lookback_days=chosen.lookback_days,
        from_=options.first_day,
        to=options.last_day,
        currency=chosen.currency,
        flight_start=flight_start,
        flight_end=flight_end,
        pacing=pacing_out,
        bookings=await _named_bookings(session, pacing_out),
        attribution=chosen,
        comparison=[
            ModelTotals(
                model=answer.model,
                conversions=answer.conversions,
                revenue=answer.revenue,
                spend=answer.spend,
                roi=answer.roi,
                roas=answer.roas,
                cpa=answer.cpa,
                touchpoints=answer.touchpoints,
                unattributed_conversions=answer.unattributed_conversions,
            )
            for answer in compared.models
        ],  # fmt: skip
        days=days,
    )


# --- share links ---------------------------------------------------------------------------------


def sign_link(secret: str, link: ReportLink) -> str:
    """The link's token: tenant, link and campaign, signed for the ``report`` purpose, expiring with
    the link. Revocation is checked against the table on every use."""
    claims = {"tid": str(link.tenant_id), "lid": str(link.id), "cid": str(link.campaign_id)}
    return tokens.sign(secret, TOKEN_PURPOSE, claims, link.expires_at - datetime.now(UTC))


def read_link_token(secret: str, token: str) -> LinkClaims:
    """The claims of a link token. Expired (with a good signature): ``LinkExpired``; anything else
    wrong — tampered, another purpose's token, garbage — ``NotFound``, saying no more."""
    try:
        claims = tokens.verify(secret, TOKEN_PURPOSE, token)
    except Unauthorized as exc:
        # PyJWT checks the signature before the expiry: an expired token is one we signed.
        if isinstance(exc.__cause__, jwt.ExpiredSignatureError):
            raise LinkExpired("this report link has expired; ask for a new one") from None
        raise NotFound(NO_LINK) from None
    try:
        return LinkClaims(uuid.UUID(claims["tid"]), uuid.UUID(claims["lid"]), uuid.UUID(claims["cid"]))
    except (KeyError, ValueError, TypeError, AttributeError):
        raise NotFound(NO_LINK) from None


async def create_link(
    session: AsyncSession,
    secret: str,
    *,
    actor: Actor,
    created_by: uuid.UUID | None,
    campaign: Campaign,
    data: ReportLinkIn,
) -> tuple[ReportLink, str]:
    """A link to the campaign's report with the chosen model and lookback, working for
    ``expires_in_days``; answers the link and its token (which is not stored)."""
    now = datetime.now(UTC)
    link = ReportLink(
        tenant_id=campaign.tenant_id, id=uuid.uuid4(), campaign_id=campaign.id, created_by=created_by,
        model=data.model, lookback_days=data.lookback_days, created_at=now,
        expires_at=now + timedelta(days=data.expires_in_days),
    )  # fmt: skip
    session.add(link)
    await session.flush()
    await audit.record(
        session, tenant_id=campaign.tenant_id, actor=actor, action="create", entity_type="report_link",
        entity_id=link.id, after=audit.snapshot(link, LINK_FIELDS),
    )  # fmt: skip
    return link, sign_link(secret, link)


async def list_links(
    session: AsyncSession, campaign_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[Sequence[ReportLink], str | None]:
    """The campaign's report links, newest first, revoked and expired ones included."""
    statement = select(ReportLink).where(ReportLink.campaign_id == campaign_id)
    return await _links.page(session, statement, limit=limit, cursor=cursor)


async def revoke_link(session: AsyncSession, actor: Actor, campaign_id: uuid.UUID, link_id: uuid.UUID) -> None:
    """Revoke a link: it stops working at once (every use checks the table). Revoking twice is a no-op."""
    link = await session.scalar(
        select(ReportLink)
        .where(*own_rows(session, ReportLink.tenant_id))
        .where(ReportLink.id == link_id, ReportLink.campaign_id == campaign_id)
        .with_for_update()
    )
    if link is None:
        raise NotFound(NO_LINK)
    if link.revoked_at is not None:
        return
    before = audit.snapshot(link, LINK_FIELDS)
    link.revoked_at = datetime.now(UTC)
    await session.flush()
    await audit.record(
        session, tenant_id=link.tenant_id, actor=actor, action="revoke", entity_type="report_link",
        entity_id=link.id, before=before, after=audit.snapshot(link, LINK_FIELDS),
    )  # fmt: skip


async def shared_report(db: Database, secret: str, token: str) -> ReportOut:
    """The report a link token opens, read acting for the token's tenant only (RLS), with the link's
    model and lookback. A link that is unknown, revoked, of a cancelled tenant or for another
    campaign is ``NotFound``; one past its expiry ``LinkExpired``."""
    claims = read_link_token(secret, token)
    async with db.tenant_transaction(claims.tenant_id) as session:
        structlog.contextvars.bind_contextvars(tenant_id=str(claims.tenant_id))
        tenant = await session.get(Tenant, claims.tenant_id)
        if tenant is None or tenant.status == "cancelled":
            raise NotFound(NO_LINK)
        link = await session.scalar(
            select(ReportLink).where(ReportLink.id == claims.link_id, ReportLink.campaign_id == claims.campaign_id)
        )
        if link is None or link.revoked_at is not None:
            raise NotFound(NO_LINK)
        if link.expires_at <= datetime.now(UTC):
            raise LinkExpired("this report link has expired; ask for a new one")
        campaign = await sponsorship.get_campaign(session, link.campaign_id)
        model: Model = link.model if link.model in MODELS else "last_touch"
        return await build_report(session, campaign, model=model, lookback_days=link.lookback_days)
