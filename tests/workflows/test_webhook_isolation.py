"""Webhook steps against hostile tenants (issue 26 items 1 and 7): a flood of slow webhooks holds no
database connection or transaction and leaves other tenants' requests answering, within a per-tenant cap
of calls in flight; the maximum timeout is 10 s; under the demo's settings only the demo receiver's exact
URL may be private, and a private target's answer is never echoed into a result.

The receivers are real local HTTP servers in threads of their own.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from castmetrics.app import create_app
from castmetrics.cli import demo_receiver_settings
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.workflows import engine
from castmetrics.workflows.models import WorkflowExecution
from castmetrics.workflows.steps import StepContext, prepare_webhook
from tests.factories.identity import Team, signup
from tests.support.http import asgi_client

# Long enough that a held request outlasts the request pool's 10 s wait for a connection.
MAX_HOLD_SECONDS = 30.0
SECRET_ANSWER = "root:x:0:0 internal answer"


@dataclass
class HoldingReceiver:
    """Answers ``/hold…`` only once ``release`` is set (or after ``MAX_HOLD_SECONDS``), anything else at
    once; ``/status/<n>`` with that status. Every answer's body is ``SECRET_ANSWER``. Counts the
    requests in flight and the most there ever were at once."""

    url: str = ""
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    most: int = 0
    paths: list[str] = field(default_factory=list)

    def hits(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for path in self.paths if path.startswith(prefix))


@pytest.fixture
def receiver() -> Iterator[HoldingReceiver]:
    state = HoldingReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.paths.append(self.path)
                state.in_flight += 1
                state.most = max(state.most, state.in_flight)
            try:
                if self.path.startswith("/hold"):
                    state.release.wait(MAX_HOLD_SECONDS)
                status = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
                body = SECRET_ANSWER.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


async def _until(condition: Any, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _create(client: httpx.AsyncClient, headers: dict[str, str], url: str) -> str:
    created = await client.post(
        "/v1/workflows",
        json={"name": "Hook", "trigger_event": "campaign.created", "steps": [{"type": "webhook", "url": url}]},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _run(client: httpx.AsyncClient, headers: dict[str, str], workflow_id: str) -> str:
    started = await client.post(f"/v1/workflows/{workflow_id}/run", json={"payload": {}}, headers=headers)
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


async def _statuses(owner_db: Database, tenant_id: uuid.UUID) -> list[str]:
    async with owner_db.transaction() as session:
        return list(
            await session.scalars(select(WorkflowExecution.status).where(WorkflowExecution.tenant_id == tenant_id))
        )


# --- item 1: calls outside transactions, a cap per tenant ----------------------------------------


async def test_a_flood_of_slow_webhooks_holds_no_connection_and_other_tenants_keep_answering(
    settings: Settings, runtime_url: str, owner_db: Database, client: httpx.AsyncClient, make_team, receiver
) -> None:  # type: ignore[no-untyped-def]
    # given the API and the workflow runner sharing one small pool, as the in-process worker did
    name = f"flood-{uuid.uuid4().hex[:8]}"
    pool = Database(runtime_url, pool_size=4, max_overflow=0, application_name=name)
    app = create_app(settings, database=pool, admin_database=owner_db)
    cap = 3
    running = settings.model_copy(update={"allow_private_webhooks": True, "workflow_webhooks_per_tenant": cap})
    flood: Team = await make_team("free")
    quiet: Team = await make_team()
    # and one tenant running a webhook to a receiver that holds every request, a dozen times
    hook = await _create(client, flood.auth("owner"), f"{receiver.url}/hold")
    floods = [await _run(client, flood.auth("owner"), hook) for _ in range(12)]
    stop = asyncio.Event()

    async def worker() -> None:  # the queue's jobs: every claimed execution runs at once
        tasks: set[asyncio.Task[str]] = set()
        while not stop.is_set():
            for claimed in await engine.claim_due(pool, running):
                task = asyncio.create_task(engine.run_claimed(pool, running, claimed))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks, return_exceptions=True)

    runner = asyncio.create_task(worker())
    try:
        # when the receiver holds the flood's calls
        await _until(lambda: receiver.in_flight >= 1, "a webhook call in flight")
        # then no connection sits in a transaction while they wait (sampled for a while: a running
        # transaction is idle between its statements for milliseconds; the old steps held theirs open for
        # the whole call)
        watch_until = time.monotonic() + 3
        while time.monotonic() < watch_until:
            async with owner_db.transaction() as session:
                idle = await session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                        "AND state LIKE 'idle in transaction%' AND clock_timestamp() - state_change > interval '2 s'"
                    ),
                    {"name": name},
                )
            assert idle == 0, "a connection stayed idle in a transaction during a webhook call"
            await asyncio.sleep(0.2)
        # and the tenant has exactly its cap of calls in flight, the others waiting for a slot, holding nothing
        await _until(lambda: receiver.in_flight >= cap, f"{cap} webhook calls in flight")
        async with owner_db.transaction() as session:
            calling = await session.scalar(
                text("SELECT count(*) FROM workflow_executions WHERE tenant_id = :t AND calling_until > now()"),
                {"t": flood.tenant_id},
            )
        assert calling == cap and receiver.in_flight == cap  # the others wait for a slot, holding nothing

        # and another tenant's requests answer while the flood's webhooks are still held
        async with asgi_client(app) as http:
            for path in ("/v1/podcasts", "/v1/workflows", "/v1/me", "/v1/campaigns"):
                answered = await http.get(path, headers=quiet.auth("viewer"))
                assert answered.status_code == 200, answered.text
                assert not receiver.release.is_set() and receiver.in_flight == cap
            # and its own webhook is delivered at once: the cap is per tenant
            quick = await _create(http, quiet.auth("owner"), f"{receiver.url}/quick")
            await _run(http, quiet.auth("owner"), quick)
            await _until(lambda: receiver.hits("/quick") == 1, "the other tenant's webhook")
        assert receiver.hits("/hold") == cap and not receiver.release.is_set()

        # when the receiver lets go, then every execution of the flood finishes, each delivered once
        receiver.release.set()
        deadline = time.monotonic() + 60
        while await _statuses(owner_db, flood.tenant_id) != ["succeeded"] * len(floods):
            assert time.monotonic() < deadline, await _statuses(owner_db, flood.tenant_id)
            await asyncio.sleep(0.2)
        assert receiver.hits("/hold") == len(floods)
        assert receiver.most <= cap + 1  # the flood's cap, and the other tenant's one call
        assert await _statuses(owner_db, quiet.tenant_id) == ["succeeded"]
    finally:
        receiver.release.set()
        stop.set()
        await runner
        await pool.dispose()


async def test_the_longest_webhook_timeout_is_10_seconds(client: httpx.AsyncClient, make_team, settings) -> None:  # type: ignore[no-untyped-def]
    # given a team
    team: Team = await make_team()
    # when a webhook step asks for 30 s, then it is refused, naming the step
    refused = await client.post(
        "/v1/workflows",
        json={"name": "Slow", "trigger_event": "campaign.created",
              "steps": [{"type": "webhook", "url": "https://example.org/hook", "timeout_seconds": 30}]},
        headers=team.auth("owner"),
    )  # fmt: skip
    assert refused.status_code == 400 and "steps[0] (webhook): timeout_seconds" in refused.json()["detail"]
    # and a step stored with 30 s before the limit was lowered runs with 10 s
    context = StepContext(
        session=None, settings=settings, tenant_id=team.tenant_id, workflow_id=uuid.uuid4(),  # type: ignore[arg-type]
        workflow_name="old", secret="s", execution_id=uuid.uuid4(), step_index=0, attempt=1,
        trigger_event="manual", event_id=None, payload={},
    )  # fmt: skip
    stored = {"type": "webhook", "url": "https://example.org/hook", "timeout_seconds": 30}
    assert prepare_webhook(context, stored).timeout == 10.0


# --- item 7: private targets ---------------------------------------------------------------------


def test_serve_demo_allows_the_demo_receivers_url_and_nothing_else(settings: Settings) -> None:
    # when serve --demo on port 8123 sets up the demo receiver
    served = settings.model_copy(update=demo_receiver_settings(settings, "http://127.0.0.1:8123"))
    # then the receiver is mounted and its URL, the demo tenant's, is the one private URL allowed
    assert served.demo_webhook_receiver is True
    assert served.private_webhook_urls == ["http://127.0.0.1:8123/v1/demo/webhook/demo"]
    assert served.allow_private_webhooks is False


async def test_under_demo_settings_only_the_demo_receivers_url_may_be_private(
    client: httpx.AsyncClient, db: Database, owner_db: Database, settings: Settings, receiver: HoldingReceiver
) -> None:
    # given the settings serve --demo gives (the demo tenant's receiver allowed, nothing else private)
    demo_url = f"{receiver.url}/status/401/v1/demo/webhook/demo"
    demo = settings.model_copy(update={"demo_webhook_receiver": True, "private_webhook_urls": [demo_url]})
    # and a new, unverified tenant pointing webhooks at an internal server
    account = await signup(client)
    headers = {"Authorization": f"Bearer {account['access_token']}"}
    tenant_id = uuid.UUID(account["tenant"]["id"])
    assert account["user"]["email_verified"] is False
    internal = [
        f"{receiver.url}/internal/admin",  # another path of the same server
        f"{demo_url}?page=2",  # the demo URL with something added
        demo_url.replace("127.0.0.1", "localhost"),  # the same place by another name
    ]
    # (one workflow, changed between runs: a free tenant has two; each execution keeps its steps)
    probe = await _create(client, headers, internal[0])
    for url in internal:
        steps = [{"type": "webhook", "url": url}]
        changed = await client.patch(f"/v1/workflows/{probe}", json={"steps": steps}, headers=headers)
        assert changed.status_code == 200, changed.text
        await _run(client, headers, probe)

    # when they run, then each is refused before any request is made
    await engine.run_pending(db, demo, tenant_id)
    async with db.tenant_transaction(tenant_id) as session:
        failed = list(await session.scalars(select(WorkflowExecution)))
    assert [execution.status for execution in failed] == ["failed"] * 3
    assert all("refused" in (execution.error or "") for execution in failed)
    assert receiver.paths == []

    # when a webhook goes to the demo receiver's exact URL, then it is delivered, and of the answer (a 401
    # with a body) the execution keeps the status only
    exact = await _create(client, headers, demo_url)
    await _run(client, headers, exact)
    await engine.run_pending(db, demo.model_copy(update={"workflow_retry_base_seconds": 0}), tenant_id)
    async with db.tenant_transaction(tenant_id) as session:
        [delivered] = await session.scalars(select(WorkflowExecution).where(WorkflowExecution.workflow_id == exact))
    assert receiver.hits("/status/401/v1/demo/webhook/demo") >= 1
    assert delivered.results[0]["errors"][0] == f"POST {demo_url} answered 401"
    assert SECRET_ANSWER not in str(delivered.results) and SECRET_ANSWER not in (delivered.error or "")


async def test_a_private_targets_answer_is_never_echoed(
    client: httpx.AsyncClient, db: Database, settings: Settings, make_team, receiver
) -> None:  # type: ignore[no-untyped-def]
    # given an operator who allows private webhooks, and a tenant pointing one at an internal server
    team: Team = await make_team()
    allowed = settings.model_copy(update={"allow_private_webhooks": True, "workflow_retry_base_seconds": 0})
    ok = await _create(client, team.auth("owner"), f"{receiver.url}/internal/config")
    refused = await _create(client, team.auth("owner"), f"{receiver.url}/status/500")
    # when both run
    await _run(client, team.auth("owner"), ok)
    await _run(client, team.auth("owner"), refused)
    deadline = time.monotonic() + 30
    while True:
        await engine.run_pending(db, allowed, team.tenant_id)
        async with db.tenant_transaction(team.tenant_id) as session:
            executions = {e.workflow_id: e for e in await session.scalars(select(WorkflowExecution))}
        if all(e.status in ("succeeded", "failed") for e in executions.values()):
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    # then the results keep the status and a short error, never the answer's body
    assert executions[uuid.UUID(ok)].results[0]["result"] == {"status_code": 200}
    failed = executions[uuid.UUID(refused)]
    assert failed.status == "failed"
    assert failed.results[0]["errors"] == [f"POST {receiver.url}/status/500 answered 500"] * 3
    assert SECRET_ANSWER not in str([e.results for e in executions.values()]) + str(failed.error)
