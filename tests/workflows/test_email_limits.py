"""Email steps are no open relay (issue 26 item 5): they reach only the tenant's own verified users (by
id, role, or a user's address), send only for a creator with a verified address, and count against the
tier's ``emails_per_day`` quota."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.auth.principal import Actor
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.identity import service as identity
from castmetrics.mail.models import Email
from castmetrics.quotas.service import TIER_LIMITS
from castmetrics.workflows import engine
from castmetrics.workflows.models import Workflow, WorkflowExecution
from castmetrics.workflows.steps import StepContext, StepError, StepRefused, run_step
from tests.factories.identity import PASSWORD, Team, bearer, signup

OUTSIDE = ["victim@outside.example", "ceo@bank.example"]


def _context(session: AsyncSession, settings: Settings, tenant_id: uuid.UUID, **fields: Any) -> StepContext:
    values: dict[str, Any] = {
        "session": session, "settings": settings, "tenant_id": tenant_id, "workflow_id": uuid.uuid4(),
        "workflow_name": "Mailer", "secret": "s", "execution_id": uuid.uuid4(), "step_index": 0, "attempt": 1,
        "trigger_event": "manual", "event_id": None, "payload": {"name": "Spring"},
    }  # fmt: skip
    return StepContext(**{**values, **fields})


def _email(**to: list[str]) -> dict[str, Any]:
    return {"type": "email", "to": to, "subject": "Your invoice {{ name }}", "body": "Pay here: https://evil.example"}


async def _mails(db: Database, tenant_id: uuid.UUID) -> list[str]:
    async with db.tenant_transaction(tenant_id) as session:
        return sorted(await session.scalars(select(Email.to_address).where(Email.kind == "workflow")))


async def _unverified_user(db: Database, settings: Settings, team: Team, role: str) -> uuid.UUID:
    async with db.tenant_transaction(team.tenant_id) as session:
        user = await identity.create_user(
            session, settings, team.tenant_id, email=f"typed-in.{uuid.uuid4().hex[:8]}@outside.example",
            name="Never Confirmed", password=PASSWORD, role_names=[role], actor=Actor.system("tests"),
        )  # fmt: skip
        return user.id


async def test_outside_addresses_are_refused(db: Database, settings: Settings, make_team) -> None:  # type: ignore[no-untyped-def]
    # given a team
    team: Team = await make_team()
    async with db.tenant_transaction(team.tenant_id) as session:
        # when an email step names only outside addresses, then it fails for good, naming them
        with pytest.raises(StepRefused, match="victim@outside.example, ceo@bank.example is not the address of a"):
            await run_step(_context(session, settings, team.tenant_id), _email(addresses=OUTSIDE))
        # when it names a user and an outside address, then only the user is written to
        result = await run_step(
            _context(session, settings, team.tenant_id),
            _email(users=[str(team.user_ids["analyst"])], addresses=OUTSIDE),
        )
    assert result == {"sent_to": [team.emails["analyst"]], "refused": OUTSIDE}
    assert await _mails(db, team.tenant_id) == [team.emails["analyst"]]


async def test_users_who_never_confirmed_their_address_are_not_reached(
    db: Database, settings: Settings, make_team
) -> None:  # type: ignore[no-untyped-def]
    # given a team, and a sales user an admin created with an address nobody confirmed
    team: Team = await make_team()
    typed_in = await _unverified_user(db, settings, team, "sales")
    async with db.tenant_transaction(team.tenant_id) as session:
        # when a step mails the sales role, then only the confirmed sales user gets it
        result = await run_step(_context(session, settings, team.tenant_id), _email(roles=["sales"]))
        assert result == {"sent_to": [team.emails["sales"]]}
        # and naming the unconfirmed user reaches nobody
        with pytest.raises(StepError, match="^no recipients$"):
            await run_step(_context(session, settings, team.tenant_id), _email(users=[str(typed_in)]))


async def test_only_a_verified_creator_sends_email(
    client: httpx.AsyncClient, db: Database, settings: Settings, make_team
) -> None:  # type: ignore[no-untyped-def]
    # given a new tenant whose owner has not confirmed their address
    account = await signup(client)
    unverified = bearer(account["access_token"])
    step = _email(roles=["owner"])
    # when the owner creates or runs a workflow with an email step, then 403 says why
    created = await client.post(
        "/v1/workflows", json={"name": "Mailer", "trigger_event": "campaign.created", "steps": [step]},
        headers=unverified,
    )  # fmt: skip
    assert created.status_code == 403 and created.json()["reason"] == "email_not_verified"

    # given a workflow with an email step whose creator is unverified (made before this rule, say)
    team: Team = await make_team()
    creator = await _unverified_user(db, settings, team, "admin")
    async with db.tenant_transaction(team.tenant_id) as session:
        workflow = Workflow(
            tenant_id=team.tenant_id, id=uuid.uuid4(), name="Old mailer", trigger_event="campaign.created",
            steps=[step | {"to": {"roles": ["sales"]}}], secret="s", created_by=creator,
        )  # fmt: skip
        session.add(workflow)
        await session.flush()
        await engine.start(session, workflow, trigger_event="manual", payload={})
    # when it runs, then it fails without sending
    await engine.run_pending(db, settings, team.tenant_id)
    async with db.tenant_transaction(team.tenant_id) as session:
        [execution] = await session.scalars(select(WorkflowExecution))
    assert execution.status == "failed" and "creator, whose email address is not verified" in (execution.error or "")
    assert await _mails(db, team.tenant_id) == []


async def test_workflow_emails_count_against_a_daily_quota(
    client: httpx.AsyncClient, db: Database, owner_db: Database, settings: Settings, make_team
) -> None:  # type: ignore[no-untyped-def]
    # given a free team whose quota is 3 workflow emails a day (the tier's default is 100)
    assert TIER_LIMITS["free"]["emails_per_day"] == 100
    team: Team = await make_team("free")
    async with owner_db.transaction() as session:
        await session.execute(
            text("UPDATE tenants SET metadata = CAST(:m AS jsonb) WHERE id = :t"),
            {"m": orjson.dumps({"quotas": {"emails_per_day": 3}}).decode(), "t": team.tenant_id},
        )
    two = _email(users=[str(team.user_ids["analyst"]), str(team.user_ids["sales"])])
    one = _email(users=[str(team.user_ids["viewer"])])
    async with db.tenant_transaction(team.tenant_id) as session:
        # when two are sent, then two more would pass the quota: refused, none of them sent
        await run_step(_context(session, settings, team.tenant_id), two)
        with pytest.raises(StepRefused, match="the emails_per_day quota of 3 is reached \\(usage 2\\)"):
            await run_step(_context(session, settings, team.tenant_id), two)
        # and one more still fits
        await run_step(_context(session, settings, team.tenant_id), one)
        assert await session.scalar(select(func.count()).select_from(Email)) == 3
    # then the usage report shows it
    usage = await client.get("/v1/tenant/usage", headers=team.auth("viewer"))
    assert usage.json()["quotas"]["emails_per_day"] == {"limit": 3, "usage": 3}
