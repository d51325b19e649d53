"""Workflow steps against a real local HTTP server, a real SMTP server and the real database: signed
webhooks and their refusals, conditions, templates, email, campaign stages and feature flags.

No request leaves this machine: webhook URLs are loopback addresses, or host names that resolve only
through a replaced resolver (so a request that arrives proves the connection went to the checked address).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import castmetrics
from castmetrics.audit.models import AuditEntry
from castmetrics.catalog import fetch
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.flags import service as flags
from castmetrics.mail.models import Email
from castmetrics.mail.tasks import deliver_all
from castmetrics.outbox.models import OutboxEvent
from castmetrics.sponsorship.models import Campaign
from castmetrics.workflows.steps import (
    StepContext,
    StepError,
    StepRefused,
    StepStopped,
    condition_holds,
    lookup,
    render,
    run_step,
    sign,
)
from tests.factories.identity import Team
from tests.factories.sponsorship import make_campaign
from tests.support.http import free_port

SECRET = "whsec-test-secret"
MakeTeam = Callable[..., Awaitable[Team]]
HOOK_HOST = "hooks.castmetrics.test"  # resolves nowhere but through the replaced resolver


# --- a webhook receiver --------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
            match parts.path.strip("/").split("/"):
                case ["ok"]:
                    self._send(200, b'{"received": true}')
                case ["status", status]:
                    self._send(int(status), b"upstream says no")
                case ["redirect"]:
                    self._send(302, b"", {"Location": "/ok"})
                case ["long"]:
                    self._send(200, "é".encode() * 3000)
                case ["slow"]:
                    time.sleep(float(query.get("seconds", "3")))
                    self._send(200, b"late")
                case _:
                    self._send(404, b"not here")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.received: list[Received] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.received.clear()
    return receiver_server


@pytest.fixture
def hook_host(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the resolver answers (anything else fails to resolve): tests fill it in."""
    answers: dict[str, list[str]] = {}

    async def resolve(host: str) -> list[str]:
        if host not in answers:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return answers[host]

    monkeypatch.setattr(fetch, "resolve_host", resolve)
    return answers


# --- a mailbox -----------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


# --- contexts ------------------------------------------------------------------------------------


@pytest.fixture
def private_ok(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_webhooks": True})


@pytest.fixture
def public_ok(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The default settings, with the loopback receiver standing in for a public one: a result keeps a
    public receiver's answer (a private one's is never echoed)."""
    is_public = fetch.is_public_address
    monkeypatch.setattr(fetch, "is_public_address", lambda address: str(address) == "127.0.0.1" or is_public(address))
    return settings


@dataclass
class Run:
    """Builds the engine's StepContext around a session; every field can be changed per test."""

    settings: Settings
    tenant_id: uuid.UUID = field(default_factory=uuid.uuid4)
    workflow_id: uuid.UUID = field(default_factory=uuid.uuid4)
    execution_id: uuid.UUID = field(default_factory=uuid.uuid4)
    event_id: uuid.UUID | None = field(default_factory=uuid.uuid4)
    payload: dict[str, Any] = field(default_factory=dict)

    def context(self, session: AsyncSession, *, step_index: int = 0, attempt: int = 1) -> StepContext:
        return StepContext(
            session=session, settings=self.settings, tenant_id=self.tenant_id, workflow_id=self.workflow_id,
            workflow_name="Tell the receiver", secret=SECRET, execution_id=self.execution_id,
            step_index=step_index, attempt=attempt, trigger_event="campaign.stage_changed",
            event_id=self.event_id, payload=self.payload,
        )  # fmt: skip


async def run_in(db: Database, run: Run, step: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Run one step in a tenant transaction of its own, as the engine does."""
    async with db.tenant_transaction(run.tenant_id) as session:
        return await run_step(run.context(session, **context), step)


def webhook(url: str, **fields: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, **fields}


# --- webhook -------------------------------------------------------------------------------------


async def test_webhook_posts_the_execution_signed_with_the_secret(
    db: Database, receiver: Receiver, public_ok: Settings
) -> None:
    # given an execution of a workflow triggered by a stage change
    run = Run(public_ok, payload={"campaign_id": "c-1", "to": "active", "amount": 12.5})
    # when its webhook step runs
    result = await run_in(db, run, webhook(receiver.url("/ok")), step_index=2)
    # then the receiver's 2xx answer is the result
    assert result == {"status_code": 200, "response": '{"received": true}'}
    [request] = receiver.received
    headers = request.headers
    # and the request carries the execution as compact JSON
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == f"Castmetrics-Webhooks/{castmetrics.__version__}"
    assert headers["x-castmetrics-event"] == "campaign.stage_changed"
    assert headers["x-castmetrics-delivery"] == f"{run.execution_id}.2"
    assert request.body == orjson.dumps(orjson.loads(request.body))
    assert orjson.loads(request.body) == {
        "workflow_id": str(run.workflow_id), "workflow_name": "Tell the receiver",
        "execution_id": str(run.execution_id), "step": 2, "event": "campaign.stage_changed",
        "event_id": str(run.event_id), "payload": {"campaign_id": "c-1", "to": "active", "amount": 12.5},
    }  # fmt: skip
    # and a receiver holding the secret can verify the signature, made just now
    parts = dict(part.split("=", 1) for part in headers["x-castmetrics-signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(time.time() - timestamp) < 30
    assert headers["x-castmetrics-signature"] == sign(SECRET, timestamp, request.body)


async def test_the_delivery_id_is_the_same_for_every_attempt_of_a_step(
    db: Database, receiver: Receiver, private_ok: Settings
) -> None:
    # given one execution, with no event behind it (a manual run)
    run = Run(private_ok, event_id=None)
    # when step 0 is tried twice, then step 1 once
    await run_in(db, run, webhook(receiver.url("/ok")), step_index=0, attempt=1)
    await run_in(db, run, webhook(receiver.url("/ok")), step_index=0, attempt=2)
    await run_in(db, run, webhook(receiver.url("/ok")), step_index=1, attempt=1)
    # then the retry repeats the delivery id, and the next step has its own
    deliveries = [request.headers["x-castmetrics-delivery"] for request in receiver.received]
    assert deliveries == [f"{run.execution_id}.0", f"{run.execution_id}.0", f"{run.execution_id}.1"]
    assert orjson.loads(receiver.received[0].body)["event_id"] is None


@pytest.mark.parametrize("status", [500, 503, 404])
async def test_a_non_2xx_answer_fails_the_attempt(
    db: Database, receiver: Receiver, public_ok: Settings, status: int
) -> None:
    # when the receiver answers an error
    with pytest.raises(StepError) as failed:
        await run_in(db, Run(public_ok), webhook(receiver.url(f"/status/{status}?token=hidden")))
    # then the attempt failed (worth retrying), saying who answered what, without the query string
    assert not isinstance(failed.value, StepRefused)
    assert str(failed.value) == f"POST {receiver.url(f'/status/{status}')} answered {status}: upstream says no"


async def test_redirects_are_not_followed(db: Database, receiver: Receiver, private_ok: Settings) -> None:
    # when the receiver answers with a redirect
    with pytest.raises(StepError, match="answered 302 \\(redirects are not followed\\)"):
        await run_in(db, Run(private_ok), webhook(receiver.url("/redirect")))
    # then its target was never asked
    assert [request.path for request in receiver.received] == ["/redirect"]


async def test_a_slow_receiver_times_out(db: Database, receiver: Receiver, private_ok: Settings) -> None:
    # given a receiver that takes 3 s and a step that waits half a second
    started = time.monotonic()
    # when the step runs
    with pytest.raises(StepError, match="timed out after 0.5 s") as failed:
        await run_in(db, Run(private_ok), webhook(receiver.url("/slow?seconds=3"), timeout_seconds=0.5))
    # then the attempt failed in about that time
    assert not isinstance(failed.value, StepRefused)
    assert time.monotonic() - started < 2.5


async def test_nobody_listening_fails_the_attempt(db: Database, private_ok: Settings) -> None:
    with pytest.raises(StepError, match="could not connect") as failed:
        await run_in(db, Run(private_ok), webhook(f"http://127.0.0.1:{free_port()}/hook"))
    assert not isinstance(failed.value, StepRefused)


async def test_the_result_keeps_the_first_500_characters(db: Database, receiver: Receiver, public_ok: Settings) -> None:
    result = await run_in(db, Run(public_ok), webhook(receiver.url("/long")))
    assert result == {"status_code": 200, "response": "é" * 500}


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",  # loopback literal
        "[::1]",  # IPv6 loopback literal
        HOOK_HOST,  # a name resolving to loopback
        "mixed.castmetrics.test",  # a public address and a private one: any private one refuses
        "mapped.castmetrics.test",  # a private IPv4 address inside IPv6
        "linklocal.castmetrics.test",  # the cloud metadata address
    ],
)
async def test_private_addresses_are_refused_by_default(
    db: Database, receiver: Receiver, settings: Settings, hook_host: dict[str, list[str]], host: str
) -> None:
    # given names that resolve to private addresses, and the default settings
    hook_host.update({
        HOOK_HOST: ["127.0.0.1"], "mixed.castmetrics.test": ["93.184.215.14", "10.1.2.3"],
        "mapped.castmetrics.test": ["::ffff:192.168.0.1"], "linklocal.castmetrics.test": ["169.254.169.254"],
    })  # fmt: skip
    assert settings.allow_private_webhooks is False
    # when a webhook step targets one of them
    with pytest.raises(StepRefused, match="refused: .* private"):
        await run_in(db, Run(settings), webhook(receiver.url("/ok", host=host)))
    # then it is refused for good, before any connection
    assert receiver.received == []


async def test_private_addresses_are_reached_when_allowed_at_the_checked_address(
    db: Database, receiver: Receiver, private_ok: Settings, hook_host: dict[str, list[str]]
) -> None:
    # given a name that only the checked lookup knows, and private webhooks allowed
    hook_host[HOOK_HOST] = ["127.0.0.1"]
    # when a webhook step targets it
    result = await run_in(db, Run(private_ok), webhook(receiver.url("/ok", host=HOOK_HOST)))
    # then the request arrived: the connection went to the checked address, under the URL's host name
    assert result["status_code"] == 200
    [request] = receiver.received
    assert request.headers["host"] == f"{HOOK_HOST}:{receiver.port}"


async def test_a_name_that_does_not_resolve_is_worth_retrying(
    db: Database, private_ok: Settings, hook_host: dict[str, list[str]]
) -> None:
    with pytest.raises(StepError, match="could not resolve nowhere.castmetrics.test") as failed:
        await run_in(db, Run(private_ok), webhook("http://nowhere.castmetrics.test/hook"))
    assert not isinstance(failed.value, StepRefused)


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    digest = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1_700_000_000, body) == f"t=1700000000,v1={digest}"


# --- condition, lookup, render -------------------------------------------------------------------

PAYLOAD: dict[str, Any] = {
    "amount": 12,
    "ratio": 0.5,
    "name": "Spring Launch",
    "stage": "active",
    "flag": True,
    "nothing": None,
    "tags": ["tech", "news", 3],
    "campaign": {"stage": "paused", "budget": {"minor": 1000}},
    "items": [{"sku": "a"}, {"sku": "b"}],
}


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        # eq / ne: numbers numerically, strings as strings, kinds never mix
        ("amount", "eq", 12, True),
        ("amount", "eq", 12.0, True),
        ("amount", "eq", "12", False),
        ("flag", "eq", True, True),
        ("flag", "eq", 1, False),  # a boolean is not a number
        ("stage", "eq", "active", True),
        ("campaign.stage", "eq", "paused", True),
        ("campaign.budget.minor", "eq", 1000, True),
        ("items.1.sku", "eq", "b", True),
        ("tags", "eq", ["tech", "news", 3], True),
        ("nothing", "eq", None, True),
        ("amount", "eq", None, False),
        ("stage", "ne", "draft", True),
        ("stage", "ne", "active", False),
        ("amount", "ne", "12", False),  # different kinds do not compare, even for ne
        ("amount", "ne", None, True),  # ne null: has a value
        ("nothing", "ne", None, False),
        # ordering: numbers and strings only
        ("amount", "gt", 10, True),
        ("amount", "gt", 12, False),
        ("amount", "gte", 12, True),
        ("ratio", "lt", 1, True),
        ("ratio", "lte", 0.5, True),
        ("name", "gt", "Autumn", True),
        ("name", "lt", "Autumn", False),
        ("amount", "gt", "10", False),  # type mismatch: false, never an error
        ("name", "gt", 3, False),
        ("flag", "gt", 0, False),
        ("nothing", "lt", 5, False),
        ("tags", "gt", 1, False),
        # in / not_in: need a list
        ("stage", "in", ["active", "paused"], True),
        ("stage", "in", ["draft"], False),
        ("amount", "in", [12.0, 13], True),
        ("amount", "in", ["12"], False),
        ("stage", "in", "active", False),  # not a list
        ("stage", "not_in", ["draft", "cancelled"], True),
        ("stage", "not_in", ["active"], False),
        ("stage", "not_in", "draft", False),  # not a list
        # contains: substring of a string, item of a list
        ("name", "contains", "Launch", True),
        ("name", "contains", "launch", False),
        ("tags", "contains", "news", True),
        ("tags", "contains", 3, True),
        ("tags", "contains", "3", False),
        ("name", "contains", 3, False),
        ("amount", "contains", 1, False),
        # exists / not_exists: presence, null included
        ("nothing", "exists", None, True),
        ("amount", "exists", None, True),
        ("missing", "exists", None, False),
        ("campaign.missing", "not_exists", None, True),
        ("nothing", "not_exists", None, False),
        # a missing field holds nothing but not_exists
        ("missing", "eq", None, False),
        ("missing", "ne", "x", False),
        ("missing", "not_in", ["x"], False),
        ("amount.deeper", "eq", 12, False),
        ("items.5.sku", "eq", "a", False),
        # an unknown operator holds nothing
        ("amount", "between", [1, 20], False),
    ],
)
def test_condition_operators(field: str, operator: str, value: Any, expected: bool) -> None:
    assert condition_holds(PAYLOAD, field, operator, value) is expected


def test_lookup_follows_dotted_paths() -> None:
    assert lookup(PAYLOAD, "campaign.budget.minor") == (True, 1000)
    assert lookup(PAYLOAD, "items.0.sku") == (True, "a")
    assert lookup(PAYLOAD, "nothing") == (True, None)
    assert lookup(PAYLOAD, "campaign.nope") == (False, None)
    assert lookup(PAYLOAD, "name.0") == (False, None)  # strings are not indexed


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ name }} is {{stage}}", "Spring Launch is active"),
        ("budget {{  campaign.budget.minor  }}", "budget 1000"),
        ("first {{ items.0.sku }}", "first a"),
        ("[{{ missing }}][{{ nothing }}]", "[][]"),
        ("{{ flag }} {{ ratio }} {{ tags }}", 'true 0.5 ["tech","news",3]'),
        ("{{ campaign.budget }}", '{"minor":1000}'),
        ("{{ name | upper }} {{ __import__('os') }} {name}", "{{ name | upper }} {{ __import__('os') }} {name}"),
        ("no placeholders", "no placeholders"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, PAYLOAD) == expected


def test_render_does_not_expand_what_a_value_contains() -> None:
    assert render("hi {{ a }}", {"a": "{{ b }}", "b": "secret"}) == "hi {{ b }}"


async def test_a_condition_step_holds_or_stops(db: Database, settings: Settings) -> None:
    run = Run(settings, payload=PAYLOAD)
    condition = {"type": "condition", "field": "amount", "operator": "gte", "value": 10}
    assert await run_in(db, run, condition) == {"held": True}
    with pytest.raises(StepStopped, match="condition amount gt 100 does not hold"):
        await run_in(db, run, {**condition, "operator": "gt", "value": 100})


async def test_an_invalid_step_is_refused(db: Database, settings: Settings) -> None:
    with pytest.raises(StepRefused, match="invalid step"):
        await run_in(db, Run(settings), {"type": "webhook", "url": "ftp://example.org/x"})
    with pytest.raises(StepRefused, match="invalid step"):
        await run_in(db, Run(settings), {"type": "teleport"})


# --- email ---------------------------------------------------------------------------------------


async def test_email_reaches_users_roles_and_addresses_over_smtp(
    make_team: MakeTeam, db: Database, settings: Settings, inbox: tuple[Inbox, int]
) -> None:
    # given a team, and mail going to a real SMTP server
    team: Team = await make_team()
    smtp_settings = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{inbox[1]}"})
    run = Run(smtp_settings, tenant_id=team.tenant_id, payload={"campaign": {"name": "Spring"}, "pace": 0.8})
    sales, analyst, owner = team.emails["sales"], team.emails["analyst"], team.emails["owner"]
    step = {
        "type": "email",
        "to": {
            "users": [str(team.user_ids["analyst"])],
            "roles": ["sales"],
            # a user's own address (an outside one is refused: test_email_limits), and the sales user
            # again, differently cased
            "addresses": [owner, sales.upper()],
        },
        "subject": "Behind:\r\n{{ campaign.name }}",
        "body": "Pace is {{ pace }}.",
    }
    # when the email step runs, then the delivery job
    result = await run_in(db, run, step)
    assert await deliver_all(db, smtp_settings) >= 3
    # then each recipient got one message: the user, the role's member, the address, no duplicate
    assert result == {"sent_to": [analyst, sales, owner]}
    received = [m for m in inbox[0].messages if m["To"] in result["sent_to"]]
    assert sorted(m["To"] for m in received) == sorted(result["sent_to"])
    for message in received:
        assert message["Subject"] == "Behind: Spring"  # rendered, on one line
        assert message.get_payload(decode=True).decode().strip() == "Pace is 0.8."  # type: ignore[union-attr]
    async with db.tenant_transaction(team.tenant_id) as session:
        rows = (await session.execute(select(Email.to_address, Email.kind, Email.status))).all()
    assert sorted(rows) == sorted((address, "workflow", "sent") for address in result["sent_to"])


async def test_email_without_recipients_fails_and_writes_nothing(
    make_team: MakeTeam, db: Database, settings: Settings
) -> None:
    # given a team, and another team whose user the step names
    team: Team = await make_team()
    other: Team = await make_team()
    step = {
        "type": "email", "to": {"users": [str(other.user_ids["owner"])], "roles": ["no-such-role"]},
        "subject": "Hello", "body": "Hi",
    }  # fmt: skip
    # when the step runs, then it fails for want of recipients: another tenant's users are not ours
    async with db.tenant_transaction(team.tenant_id) as session:
        with pytest.raises(StepError, match="^no recipients$"):
            await run_step(Run(settings, tenant_id=team.tenant_id).context(session), step)
        # and the transaction goes on, with no email queued
        assert (await session.execute(select(Email).where(Email.kind == "workflow"))).all() == []


# --- campaign stage ------------------------------------------------------------------------------


async def _campaign(db: Database, team: Team, campaign_id: str) -> tuple[str, list[dict[str, Any]]]:
    async with db.tenant_transaction(team.tenant_id) as session:
        campaign = await session.get(Campaign, (team.tenant_id, uuid.UUID(campaign_id)))
        assert campaign is not None
        events = await session.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.event_type == "campaign.stage_changed")
            .order_by(OutboxEvent.created_at)
        )
        return campaign.stage, list(events)


async def test_set_campaign_stage_moves_the_campaign(
    make_team: MakeTeam, client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    # given a draft campaign, and an event about it
    team: Team = await make_team()
    campaign = await make_campaign(client, team)
    run = Run(settings, tenant_id=team.tenant_id, payload={"campaign_id": campaign["id"]})
    # when a step moves it to active
    result = await run_in(db, run, {"type": "set_campaign_stage", "stage": "active"})
    # then it is active, and campaign.stage_changed is in the outbox with the workflow's reason
    assert result == {"campaign_id": campaign["id"], "from": "draft", "to": "active"}
    stage, events = await _campaign(db, team, campaign["id"])
    assert stage == "active"
    [event] = events
    assert (event["from"], event["to"], event["reason"]) == ("draft", "active", "workflow Tell the receiver")
    # and the change is audited as the workflow's
    async with db.tenant_transaction(team.tenant_id) as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "transition"))
    assert entry is not None
    assert (entry.actor_type, entry.actor_id) == ("system", f"workflow:{run.workflow_id}")

    # when the step runs again (a retry, or a second event): already there
    again = await run_in(db, run, {"type": "set_campaign_stage", "stage": "active", "campaign_id": campaign["id"]})
    # then nothing changes and nothing is announced
    assert again == {"campaign_id": campaign["id"], "stage": "active", "unchanged": True}
    assert len((await _campaign(db, team, campaign["id"]))[1]) == 1


async def test_an_illegal_transition_is_refused_and_leaves_nothing(
    make_team: MakeTeam, client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    # given a completed campaign (final)
    team: Team = await make_team()
    campaign = await make_campaign(client, team, stage="completed")
    _, before = await _campaign(db, team, campaign["id"])
    run = Run(settings, tenant_id=team.tenant_id, payload={"campaign_id": campaign["id"]})
    async with db.tenant_transaction(team.tenant_id) as session:
        # when a step tries to reactivate it
        with pytest.raises(StepRefused, match="completed campaign is final"):
            await run_step(run.context(session), {"type": "set_campaign_stage", "stage": "active"})
        # then the engine's transaction is still usable
        assert await session.scalar(select(Campaign.stage)) == "completed"
    # and nothing was written
    assert await _campaign(db, team, campaign["id"]) == ("completed", before)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "the payload has no campaign_id"),
        ({"campaign_id": "not-a-uuid"}, "is not a campaign id"),
        ({"campaign_id": "00000000-0000-4000-8000-000000000000"}, "no campaign 00000000"),
    ],
)
async def test_set_campaign_stage_needs_a_campaign(
    make_team: MakeTeam, db: Database, settings: Settings, payload: dict[str, Any], message: str
) -> None:
    team: Team = await make_team()
    with pytest.raises(StepRefused, match=message):
        await run_in(
            db,
            Run(settings, tenant_id=team.tenant_id, payload=payload),
            {"type": "set_campaign_stage", "stage": "active"},
        )


# --- feature flag --------------------------------------------------------------------------------


async def test_update_feature_flag_sets_the_tenant_override(
    make_team: MakeTeam, db: Database, settings: Settings
) -> None:
    # given a team with custom_roles on (the global default)
    team: Team = await make_team()
    async with db.tenant_transaction(team.tenant_id) as session:
        assert (await flags.effective(session, team.tenant_id))["custom_roles"] is True
    run = Run(settings, tenant_id=team.tenant_id)
    # when a step switches it off for the tenant
    result = await run_in(db, run, {"type": "update_feature_flag", "flag": "custom_roles", "enabled": False})
    # then the tenant sees it off at once (the cache forgot the old value), and the change is audited
    assert result == {"flag": "custom_roles", "enabled": False}
    async with db.tenant_transaction(team.tenant_id) as session:
        assert (await flags.effective(session, team.tenant_id))["custom_roles"] is False
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.entity_type == "feature_flag"))
    assert entry is not None
    assert (entry.actor_type, entry.actor_id, entry.entity_id) == (
        "system",
        f"workflow:{run.workflow_id}",
        "custom_roles",
    )


async def test_an_unknown_flag_is_refused(make_team: MakeTeam, db: Database, settings: Settings) -> None:
    team: Team = await make_team()
    with pytest.raises(StepRefused, match="no feature flag named 'no_such_flag'"):
        await run_in(
            db,
            Run(settings, tenant_id=team.tenant_id),
            {"type": "update_feature_flag", "flag": "no_such_flag", "enabled": True},
        )
