"""Verification, password reset and invitation links, sent over a real SMTP server and followed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from email.message import Message
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.mail.tasks import deliver_all
from tests.factories.identity import PASSWORD, bearer, signup
from tests.support.http import asgi_client, free_port

NEW_PASSWORD = "a brand new passphrase 77"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"

    def last_to(self, address: str) -> Message:
        found = [m for m in self.messages if m["To"] == address]
        assert found, f"no message to {address}"
        return found[-1]


def token_from(message: Message) -> str:
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    link = re.search(r"https?://\S+", body)
    assert link, body
    return parse_qs(urlsplit(link.group(0)).query)["token"][0]


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture(scope="module")
def smtp_settings(settings: Settings, inbox: tuple[Inbox, int]) -> Settings:
    return settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{inbox[1]}"})


@pytest.fixture
async def mail_client(smtp_settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(smtp_settings, database=db)
    async with asgi_client(app) as client:
        yield client


async def test_verification_link_from_the_email(mail_client: httpx.AsyncClient, inbox, smtp_settings, db) -> None:  # type: ignore[no-untyped-def]
    handler, _ = inbox
    owner = await signup(mail_client, email="verify.me@example.com")
    headers = bearer(owner["access_token"])
    # unverified: may log in, may not create API keys or invite (403 naming the reason)
    refused = await mail_client.post("/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=headers)
    assert refused.status_code == 403 and refused.json()["reason"] == "email_not_verified"
    invite = await mail_client.post("/v1/users", json={"email": "x@example.com", "name": "X"}, headers=headers)
    assert invite.status_code == 403 and invite.json()["reason"] == "email_not_verified"

    assert await deliver_all(db, smtp_settings) >= 1
    message = handler.last_to("verify.me@example.com")
    assert "Confirm your email" in message["Subject"]
    verified = await mail_client.get("/v1/auth/verify-email", params={"token": token_from(message)})
    assert verified.status_code == 200 and verified.json() == {"email": "verify.me@example.com", "email_verified": True}
    assert (await mail_client.get("/v1/me", headers=headers)).json()["user"]["email_verified"] is True
    allowed = await mail_client.post("/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=headers)
    assert allowed.status_code == 201
    forged = await mail_client.get("/v1/auth/verify-email", params={"token": token_from(message)[:-4] + "AAAA"})
    assert forged.status_code == 401


async def test_password_reset_by_email_is_single_use(mail_client: httpx.AsyncClient, inbox, smtp_settings, db) -> None:  # type: ignore[no-untyped-def]
    handler, _ = inbox
    session = await signup(mail_client, email="forgot@example.com")
    assert (await mail_client.post("/v1/auth/password-reset", json={"email": "forgot@example.com"})).status_code == 202
    unknown = await mail_client.post("/v1/auth/password-reset", json={"email": "nobody-here@example.com"})
    assert unknown.status_code == 202  # the same answer: no account enumeration
    await deliver_all(db, smtp_settings)
    token = token_from(handler.last_to("forgot@example.com"))
    confirm = await mail_client.post("/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})
    assert confirm.status_code == 204
    again = await mail_client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD + "x"}
    )
    assert again.status_code == 401
    old = await mail_client.post("/v1/auth/login", json={"email": "forgot@example.com", "password": PASSWORD})
    new = await mail_client.post("/v1/auth/login", json={"email": "forgot@example.com", "password": NEW_PASSWORD})
    assert (old.status_code, new.status_code) == (401, 200)
    # every earlier session ended with the reset
    assert (
        await mail_client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    ).status_code == 401


async def test_invitation_sets_a_password_and_roles(
    make_team, mail_client: httpx.AsyncClient, inbox, smtp_settings, db
) -> None:  # type: ignore[no-untyped-def]
    handler, _ = inbox
    team = await make_team()
    roles = (await mail_client.get("/v1/roles", headers=team.auth("owner"))).json()["items"]
    analyst = next(r["id"] for r in roles if r["name"] == "analyst")
    invited = await mail_client.post(
        "/v1/users", json={"email": "new.hire@example.com", "name": "New Hire", "role_ids": [analyst]},
        headers=team.auth("admin"),
    )  # fmt: skip
    assert invited.status_code == 201, invited.text
    assert invited.json()["roles"] == ["analyst"] and invited.json()["email_verified"] is False
    await deliver_all(db, smtp_settings)
    token = token_from(handler.last_to("new.hire@example.com"))
    accepted = await mail_client.post("/v1/auth/accept-invite", json={"token": token, "password": NEW_PASSWORD})
    assert accepted.status_code == 200
    me = (await mail_client.get("/v1/me", headers=bearer(accepted.json()["access_token"]))).json()
    assert me["roles"] == ["analyst"] and me["user"]["email_verified"] is True
    twice = await mail_client.post("/v1/auth/accept-invite", json={"token": token, "password": NEW_PASSWORD})
    assert twice.status_code == 401
