"""The entity kit (``castmetrics.db.repository``) on the real database, as the runtime role under RLS."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from castmetrics.db.repository import Repository
from castmetrics.db.session import Database
from castmetrics.errors import NotFound
from castmetrics.sponsorship.models import Sponsor

SPONSORS = Repository(Sponsor, moment=Sponsor.created_at)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def _add_sponsors(db: Database, tenant_id: uuid.UUID, *minutes: int) -> list[uuid.UUID]:
    """Sponsors of the tenant created ``minutes`` after T0, each named by its minute; their ids in order."""
    rows = [
        Sponsor(tenant_id=tenant_id, id=uuid.uuid4(), name=f"m{m}", created_at=T0 + timedelta(minutes=m))
        for m in minutes
    ]
    async with db.tenant_transaction(tenant_id) as session:
        session.add_all(rows)
    return [row.id for row in rows]


async def test_get_answers_the_tenants_own_row(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    [sponsor_id] = await _add_sponsors(db, tenant.id, 0)

    async with db.tenant_transaction(tenant.id) as session:
        sponsor = await SPONSORS.get(session, sponsor_id, missing="no such sponsor")

    assert (sponsor.id, sponsor.name) == (sponsor_id, "m0")


async def test_another_tenants_row_is_not_found_like_a_missing_one(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = await make_tenant(), await make_tenant()
    [their_sponsor] = await _add_sponsors(db, theirs.id, 0)

    async with db.tenant_transaction(ours.id) as session:
        with pytest.raises(NotFound) as other_tenants:
            await SPONSORS.get(session, their_sponsor, missing="no such sponsor")
        with pytest.raises(NotFound) as missing:
            await SPONSORS.get(session, uuid.uuid4(), missing="no such sponsor")

    # The same answer, word for word (the problem+json detail): a tenant cannot probe for others' ids.
    assert other_tenants.value.detail == missing.value.detail == "no such sponsor"
    async with db.tenant_transaction(theirs.id) as session:
        assert (await SPONSORS.get(session, their_sponsor, missing="no such sponsor")).id == their_sponsor


async def test_criteria_narrow_the_lookup(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    [sponsor_id] = await _add_sponsors(db, tenant.id, 0)

    async with db.tenant_transaction(tenant.id) as session:
        found = await SPONSORS.get(session, sponsor_id, Sponsor.name == "m0", missing="no such sponsor")
        by_name = await SPONSORS.get_by(session, Sponsor.name == "m0", missing="no sponsor named 'm0'")
        with pytest.raises(NotFound, match="^no such sponsor of that name$"):
            await SPONSORS.get(session, sponsor_id, Sponsor.name == "m1", missing="no such sponsor of that name")
        with pytest.raises(NotFound, match="^no sponsor named 'm1'$"):
            await SPONSORS.get_by(session, Sponsor.name == "m1", missing="no sponsor named 'm1'")

    assert found.id == by_name.id == sponsor_id


async def test_for_update_reloads_the_locked_row(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant()
    [sponsor_id] = await _add_sponsors(db, tenant.id, 0)

    async with db.tenant_transaction(tenant.id) as session:
        held = await SPONSORS.get(session, sponsor_id, missing="no such sponsor")
        # Another transaction renames it and commits while this one still holds the entity.
        async with db.tenant_transaction(tenant.id) as other:
            await other.execute(update(Sponsor).where(Sponsor.id == sponsor_id).values(name="renamed"))
        plain = await SPONSORS.get(session, sponsor_id, missing="no such sponsor")
        assert plain.name == "m0"  # the identity map keeps what the session loaded
        locked = await SPONSORS.get(session, sponsor_id, missing="no such sponsor", for_update=True)

    assert locked is held
    assert locked.name == "renamed"


async def test_pages_run_newest_first_ties_by_id_and_only_the_tenants_rows(make_tenant, db: Database) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = await make_tenant(), await make_tenant()
    m0, m1a, m1b, m2, m3 = await _add_sponsors(db, ours.id, 0, 1, 1, 2, 3)
    await _add_sponsors(db, theirs.id, 4, 5)
    tied = sorted([m1a, m1b], reverse=True)  # same created_at: the larger id first

    async with db.tenant_transaction(ours.id) as session:
        first, cursor = await SPONSORS.page(session, limit=2, cursor=None)
        assert cursor is not None
        second, cursor = await SPONSORS.page(session, limit=2, cursor=cursor)
        assert cursor is not None
        last, end = await SPONSORS.page(session, limit=2, cursor=cursor)
        narrowed, _ = await SPONSORS.page(session, select(Sponsor).where(Sponsor.name != "m3"), limit=10, cursor=None)

    assert [s.id for s in first] == [m3, m2]
    assert [s.id for s in second] == tied
    assert ([s.id for s in last], end) == ([m0], None)
    assert [s.id for s in narrowed] == [m2, *tied, m0]
