"""Per-address limits on the platform's own mail (issue 26 item 5): password-reset requests past the limit
are answered as always but send nothing (no enumeration, no flooding a mailbox); verification resends past
it answer 429."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from castmetrics.db.session import Database
from castmetrics.identity.service import ADDRESS_MAILS
from castmetrics.mail.models import Email
from tests.factories.identity import bearer, signup


async def _sent(db: Database, tenant_id: str, kind: str, to: str) -> int:
    async with db.tenant_transaction(uuid.UUID(tenant_id)) as session:
        return len((await session.scalars(select(Email).where(Email.kind == kind, Email.to_address == to))).all())


async def test_password_resets_to_one_address_are_limited_silently(client: httpx.AsyncClient, db: Database) -> None:
    # given two accounts
    target = await signup(client, email=f"target.{uuid.uuid4().hex[:8]}@example.com")
    other = await signup(client, email=f"other.{uuid.uuid4().hex[:8]}@example.com")
    address, tenant = target["user"]["email"], target["tenant"]["id"]
    # when someone asks for ten resets of one address (in another case, too)
    for n in range(10):
        asked = await client.post("/v1/auth/password-reset", json={"email": address.upper() if n % 2 else address})
        # then every request gets the same answer
        assert asked.status_code == 202 and asked.json() == {"status": "queued"}
    # but only the first few were sent, and another address is not affected
    assert await _sent(db, tenant, "password_reset", address) == ADDRESS_MAILS
    assert (await client.post("/v1/auth/password-reset", json={"email": other["user"]["email"]})).status_code == 202
    assert await _sent(db, other["tenant"]["id"], "password_reset", other["user"]["email"]) == 1


async def test_verification_resends_are_limited_with_429(client: httpx.AsyncClient, db: Database) -> None:
    # given a new account (its sign-up sent the first verification email)
    account = await signup(client)
    headers = bearer(account["access_token"])
    address, tenant = account["user"]["email"], account["tenant"]["id"]
    # when it asks again and again, then the resends up to the limit are queued
    for _ in range(ADDRESS_MAILS - 1):
        assert (await client.post("/v1/auth/verify-email/resend", headers=headers)).status_code == 202
    # and the next is refused, saying when to try again
    refused = await client.post("/v1/auth/verify-email/resend", headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert await _sent(db, tenant, "verify_email", address) == ADDRESS_MAILS
