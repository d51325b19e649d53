"""Seeding the demo network. Each domain adds its demo data here through its own service."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit.service import Actor
from castmetrics.errors import NotFound
from castmetrics.tenancy import service as tenancy
from castmetrics.tenancy.models import Tenant
from castmetrics.tenancy.schemas import TenantCreate

DEMO_SLUG = "demo"
DEMO_ACTOR = Actor.system("demo")


@dataclass
class DemoSummary:
    tenant: Tenant
    created: bool
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (role, email, password)


async def seed(session: AsyncSession) -> DemoSummary:
    """Create the demo tenant (pro tier) unless it exists; safe to run any number of times.

    Needs a privileged (owner) session: it creates a tenant.
    """
    try:
        tenant = await tenancy.get_by_slug(session, DEMO_SLUG)
        created = False
    except NotFound:
        tenant = await tenancy.create(
            session,
            TenantCreate(name="Demo Podcast Network", slug=DEMO_SLUG, subscription_tier="pro"),
            DEMO_ACTOR,
        )
        created = True
    return DemoSummary(tenant=tenant, created=created)
