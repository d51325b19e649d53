"""Seeding the demo network. Each domain adds its demo data here through its own service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.auth.principal import Actor
from castmetrics.catalog import service as catalog
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo import attribution as demo_attribution
from castmetrics.demo import listening
from castmetrics.demo import sponsorship as demo_sponsorship
from castmetrics.demo import workflows as demo_workflows
from castmetrics.identity import service as identity
from castmetrics.identity.models import User
from castmetrics.identity.permissions import DEFAULT_ROLES
from castmetrics.tenancy.models import Tenant
from castmetrics.tenancy.schemas import TenantCreate

DEMO_SLUG = "demo"
FEEDS_DIR = Path(__file__).resolve().parent / "feeds"
DEMO_ACTOR = Actor.system("demo")
DEMO_PASSWORD = "listen-through-rate-42"
DEMO_EMAIL_DOMAIN = "demo.example.com"


@dataclass
class CampaignDelivery:
    """What ``seed_campaign_delivery`` did: running bookings booked against their downloads, and the
    attribution events written."""

    bookings_sized: int
    attribution: demo_attribution.AttributionResult

    def describe(self) -> str:
        return (
            f"Pacing: {self.bookings_sized} running bookings booked against their downloads\n"
            + self.attribution.describe()
        )


@dataclass
class DemoSummary:
    tenant: Tenant
    created: bool
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (role, email, password)
    delivery: CampaignDelivery | None = None  # when ``seed`` found listening without attribution


async def _bring_shows_up_to_date(session: AsyncSession, tenant_id: uuid.UUID, now: datetime | None = None) -> None:
    """The bundled feeds are years old: move each show's episodes forward, spacing kept, so that its
    newest came out two days before ``now`` (default: the database's clock) and the demo shows launches
    and their decay. Once, at creation."""
    await session.execute(
        text(
            """
            UPDATE episodes e SET published_at = e.published_at + shift.by
            FROM (
                SELECT podcast_id,
                       date_trunc('hour', coalesce(CAST(:now AS timestamptz), now()) - interval '2 days')
                       - max(published_at) AS by
                FROM episodes WHERE tenant_id = :t AND published_at IS NOT NULL GROUP BY podcast_id
            ) AS shift
            WHERE e.tenant_id = :t AND e.podcast_id = shift.podcast_id AND e.published_at IS NOT NULL
              AND shift.by > interval '0'
            """
        ),
        {"t": tenant_id, "now": now},
    )


async def seed_campaign_delivery(
    db: Database, tenant_id: uuid.UUID, settings: Settings, *, now: datetime | None = None
) -> CampaignDelivery:
    """What the demo's campaigns delivered, once its listening and downloads exist (after
    ``demo.listening.generate``): the running bookings booked against the downloads they got, so that
    pacing shows some ahead and some behind (``demo_sponsorship.size_bookings``), then the impressions,
    clicks and conversions of the ads the listening heard (``demo.attribution``). Safe to run any
    number of times: a re-run sizes nothing again and stores no event twice."""
    async with db.tenant_transaction(tenant_id) as session:
        sized = await demo_sponsorship.size_bookings(session, DEMO_ACTOR, now=now)
    written = await demo_attribution.generate(db, tenant_id, retention_days=settings.event_retention_days, now=now)
    return CampaignDelivery(sized, written)


async def seed(
    owner: Database,
    runtime: Database,
    settings: Settings,
    *,
    webhook_base_url: str = demo_workflows.DEFAULT_BASE_URL,
    now: datetime | None = None,
) -> DemoSummary:
    """Create the demo tenant (pro tier) with an owner and one user per default role, and three real
    podcasts with their episodes, its sponsorship book and its workflows (the webhook one posting to
    the demo receiver at ``webhook_base_url``), unless they exist; safe to run any number
    of times. A demo seeded before its campaigns had attribution (listening, no attribution event) gets
    its campaign delivery here (``seed_campaign_delivery``). ``now`` (default: the current time) is the
    moment the shows' newest episodes and the campaigns' flights are placed around, and the delivery's
    end. Only the slug lookup uses the owner (it crosses tenants); everything else runs as the runtime
    role acting for the demo tenant."""
    async with owner.transaction() as session:
        existing = await session.scalar(select(Tenant.id).where(Tenant.slug == DEMO_SLUG))
    tenant_id = existing or uuid.uuid4()
    async with runtime.tenant_transaction(tenant_id) as session:
        if existing is None:
            tenant = await identity.provision_tenant(
                session,
                TenantCreate(name="Demo Podcast Network", slug=DEMO_SLUG, subscription_tier="pro"),
                DEMO_ACTOR,
                tenant_id=tenant_id,
            )
        else:
            tenant = await session.get_one(Tenant, tenant_id)
        logins = []
        for role in DEFAULT_ROLES:
            email = f"{role}@{DEMO_EMAIL_DOMAIN}"
            taken = await session.scalar(select(User.id).where(func.lower(User.email) == email))
            if taken is None:
                await identity.create_user(
                    session, settings, tenant_id, email=email, name=f"Demo {role.title()}",
                    password=DEMO_PASSWORD, role_names=[role], actor=DEMO_ACTOR, email_verified=True,
                )  # fmt: skip
            logins.append((role, email, DEMO_PASSWORD))
        for feed in sorted(FEEDS_DIR.glob("*.xml")):
            await catalog.seed_from_document(session, tenant, DEMO_ACTOR, feed.read_bytes())
        if existing is None:
            await _bring_shows_up_to_date(session, tenant_id, now)
        await demo_sponsorship.seed_book(session, tenant, DEMO_ACTOR, now=now)
        await demo_workflows.seed_workflows(session, tenant, DEMO_ACTOR, base_url=webhook_base_url)
    summary = DemoSummary(tenant=tenant, created=existing is None, logins=logins)
    if (
        existing is not None
        and await listening.has_listening(runtime, tenant_id)
        and not await demo_attribution.has_attribution(runtime, tenant_id)
    ):
        summary.delivery = await seed_campaign_delivery(runtime, tenant_id, settings, now=now)
    return summary
