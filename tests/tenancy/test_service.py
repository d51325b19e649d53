"""Tenant lifecycle through the service: validation, conflicts, status rules, audit and outbox."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from castmetrics.audit.models import AuditEntry
from castmetrics.auth.principal import Actor
from castmetrics.db.session import Database
from castmetrics.errors import Conflict, Forbidden
from castmetrics.outbox.models import OutboxEvent
from castmetrics.tenancy import service as tenancy
from castmetrics.tenancy.schemas import TenantCreate, TenantUpdate

OPERATOR = Actor.system("tests")


async def test_create_records_audit_and_outbox(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant("acme", name="Acme Audio", subscription_tier="pro", time_zone="Europe/Berlin")
    assert (tenant.slug, tenant.subscription_tier, tenant.status, tenant.time_zone) == (
        "acme",
        "pro",
        "active",
        "Europe/Berlin",
    )
    assert tenant.subscription_status == "none"
    async with db.tenant_transaction(tenant.id) as session:
        entry = (await session.scalars(select(AuditEntry))).one()
        event = (await session.scalars(select(OutboxEvent))).one()
    assert (entry.action, entry.entity_type, entry.actor_type, entry.actor_id) == (
        "create",
        "tenant",
        "system",
        "tests",
    )
    assert entry.changes["slug"] == {"before": None, "after": "acme"}
    assert (event.event_type, event.payload) == (
        "tenant.created",
        {"slug": "acme", "subscription_tier": "pro"},
    )


async def test_duplicate_slug_is_a_conflict_and_keeps_the_first(make_tenant, owner_db: Database) -> None:  # type: ignore[no-untyped-def]
    first = await make_tenant("taken", name="First")
    with pytest.raises(Conflict, match="slug 'taken'"):
        await make_tenant("taken", name="Second")
    async with owner_db.transaction() as session:
        names = (await session.execute(text("SELECT name FROM tenants WHERE slug = 'taken'"))).scalars().all()
    assert names == ["First"]
    assert first.name == "First"


async def test_duplicate_domain_is_a_conflict(make_tenant) -> None:  # type: ignore[no-untyped-def]
    await make_tenant(domain="Podcasts.Example.com")
    with pytest.raises(Conflict, match="domain"):
        await make_tenant(domain="podcasts.example.com")


@pytest.mark.parametrize(
    "fields",
    [
        {"slug": "Has Spaces"},
        {"slug": "-leading-dash"},
        {"slug": "x" * 64},
        {"time_zone": "Mars/Olympus_Mons"},
        {"subscription_tier": "platinum"},
        {"billing_email": "not-an-email"},
        {"name": ""},
        {"unexpected": "field"},
    ],
)
def test_invalid_tenant_input_is_refused(fields: dict[str, object]) -> None:
    data: dict[str, object] = {"name": "Valid", "slug": "valid-slug", **fields}
    with pytest.raises(ValidationError):
        TenantCreate.model_validate(data)


async def test_status_rules(make_tenant, owner_db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    tenancy.ensure_access(tenant, write=True)
    async with owner_db.transaction() as session:
        loaded = await tenancy.get(session, tenant.id)
        suspended = await tenancy.set_status(session, loaded, "suspended", OPERATOR)
        tenancy.ensure_access(suspended, write=False)  # reads still allowed
        with pytest.raises(Forbidden) as refused_write:
            tenancy.ensure_access(suspended, write=True)
        assert refused_write.value.extra["reason"] == "tenant_suspended"
        cancelled = await tenancy.set_status(session, suspended, "cancelled", OPERATOR)
        with pytest.raises(Forbidden) as refused_read:
            tenancy.ensure_access(cancelled, write=False)
        assert refused_read.value.extra["reason"] == "tenant_cancelled"
        with pytest.raises(Conflict):
            await tenancy.set_status(session, cancelled, "archived", OPERATOR)
        active = await tenancy.set_status(session, cancelled, "active", OPERATOR)
        assert active.status == "active"
        events = (
            (
                await session.execute(
                    text("SELECT event_type FROM outbox_events WHERE tenant_id = :t ORDER BY created_at"),
                    {"t": tenant.id},
                )
            )
            .scalars()
            .all()
        )
    assert events == ["tenant.created", "tenant.suspended", "tenant.cancelled", "tenant.active"]


async def test_update_in_tenant_context_is_audited(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant(name="Before")
    async with db.tenant_transaction(tenant.id) as session:
        current = await tenancy.get(session, tenant.id)
        updated = await tenancy.update(
            session, current, TenantUpdate(name="After", time_zone="America/New_York"), Actor("user", "u-1")
        )
        assert (updated.name, updated.time_zone) == ("After", "America/New_York")
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "update"))).all()
    assert len(entries) == 1
    assert entries[0].changes == {
        "name": {"before": "Before", "after": "After"},
        "time_zone": {"before": "UTC", "after": "America/New_York"},
    }


async def test_list_pages_newest_first(make_tenant, owner_db: Database) -> None:  # type: ignore[no-untyped-def]
    made = [await make_tenant(f"page-{i}") for i in range(5)]
    seen: list[str] = []
    cursor = None
    async with owner_db.transaction() as session:
        while True:
            page, cursor = await tenancy.list_page(session, limit=2, cursor=cursor)
            assert len(page) <= 2
            seen.extend(t.slug for t in page)
            if cursor is None:
                break
    assert seen == [t.slug for t in reversed(made)]


async def test_a_tenant_context_lists_only_itself(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    a = await make_tenant()
    await make_tenant()
    async with db.tenant_transaction(a.id) as session:
        page, cursor = await tenancy.list_page(session)
    assert [t.id for t in page] == [a.id] and cursor is None
