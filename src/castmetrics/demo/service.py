"""Seeding the demo network. Each domain adds its demo data here through its own service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit.service import Actor
from castmetrics.catalog import service as catalog
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.identity import service as identity
from castmetrics.identity.models import User
from castmetrics.identity.permissions import DEFAULT_ROLES
from castmetrics.sponsorship import service as sponsorship
from castmetrics.tenancy.models import Tenant
from castmetrics.tenancy.schemas import TenantCreate

DEMO_SLUG = "demo"
FEEDS_DIR = Path(__file__).resolve().parent / "feeds"
DEMO_ACTOR = Actor.system("demo")
DEMO_PASSWORD = "listen-through-rate-42"
DEMO_EMAIL_DOMAIN = "demo.example.com"


@dataclass
class DemoSummary:
    tenant: Tenant
    created: bool
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (role, email, password)


async def _bring_shows_up_to_date(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """The bundled feeds are years old: move each show's episodes forward, spacing kept, so that its
    newest came out two days ago and the demo shows launches and their decay. Once, at creation."""
    await session.execute(
        text(
            """
            UPDATE episodes e SET published_at = e.published_at + shift.by
            FROM (
                SELECT podcast_id, date_trunc('hour', now() - interval '2 days') - max(published_at) AS by
                FROM episodes WHERE tenant_id = :t AND published_at IS NOT NULL GROUP BY podcast_id
            ) AS shift
            WHERE e.tenant_id = :t AND e.podcast_id = shift.podcast_id AND e.published_at IS NOT NULL
              AND shift.by > interval '0'
            """
        ),
        {"t": tenant_id},
    )


async def seed(owner: Database, runtime: Database, settings: Settings) -> DemoSummary:
    """Create the demo tenant (pro tier) with an owner and one user per default role, and three real
    podcasts with their episodes, unless they exist; safe to run any number of times. Only the slug
    lookup uses the owner (it crosses tenants); everything else runs as the runtime role acting for
    the demo tenant."""
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
            await _bring_shows_up_to_date(session, tenant_id)
        await sponsorship.seed_demo(session, tenant, DEMO_ACTOR)
    return DemoSummary(tenant=tenant, created=existing is None, logins=logins)
