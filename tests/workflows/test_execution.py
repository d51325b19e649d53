"""Workflows end to end: domain events through the outbox start executions, a real local HTTP server
receives signed webhooks, retries, durable delays, a worker killed mid-execution, tenant isolation
and fairness."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.workflows import engine
from castmetrics.workflows import publishing as outbox_tasks
from tests.factories.identity import Team
from tests.factories.sponsorship import make_campaign


@dataclass
class Receiver:
    """A local HTTP server recording every request; ``fail[path]`` answers 500 that many times first,
    ``hold[path]`` keeps the request that many seconds before answering."""

    url: str = ""
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    hold: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hits(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(headers, body) for p, headers, body in self.requests if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.requests.append((self.path, dict(self.headers.items()), body))
                failing = state.fail.get(self.path, 0)
                if failing:
                    state.fail[self.path] = failing - 1
                hold = state.hold.pop(self.path, 0.0)
            if hold:
                time.sleep(hold)
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no" if failing else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def run_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_webhooks": True, "workflow_retry_base_seconds": 0.05})


async def create_workflow(client: httpx.AsyncClient, team: Team, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/workflows", json={"name": "Flow", **body}, headers=team.auth("owner"))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def executions(client: httpx.AsyncClient, team: Team, workflow_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/workflows/{workflow_id}/executions", headers=team.auth("viewer"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def settle(db: Database, settings: Settings, tenant_id: uuid.UUID, *, seconds: float = 15.0) -> None:
    """Publish the outbox, then run whatever is due until nothing is pending or waiting."""
    await outbox_tasks.publish_all(db)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await engine.run_pending(db, settings, tenant_id)
        async with db.tenant_transaction(tenant_id) as session:
            open_ = await session.scalar(
                text("SELECT count(*) FROM workflow_executions WHERE status IN ('pending', 'running', 'waiting')")
            )
        if not open_:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("executions did not finish in time")


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> int:
    parts = dict(item.split("=", 1) for item in headers["X-Castmetrics-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    return int(parts["t"])


async def test_a_campaign_transition_triggers_a_signed_webhook(
    client: httpx.AsyncClient, make_team, db: Database, run_settings: Settings, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(
        client, team, trigger_event="campaign.stage_changed",
        conditions=[{"field": "to", "operator": "eq", "value": "active"}],
        steps=[{"type": "webhook", "url": f"{receiver.url}/hook"}],
    )  # fmt: skip
    campaign = await make_campaign(client, team, "draft")
    await settle(db, run_settings, team.tenant_id)
    assert receiver.hits("/hook") == []  # created, not yet active: the condition does not hold
    moved = await client.post(
        f"/v1/campaigns/{campaign['id']}/transition", json={"stage": "active"}, headers=team.auth("sales")
    )
    assert moved.status_code == 200
    await settle(db, run_settings, team.tenant_id)
    [(headers, body)] = receiver.hits("/hook")
    stamp = verify_signature(workflow["secret"], headers, body)
    assert abs(stamp - time.time()) < 60
    sent = json.loads(body)
    assert sent["event"] == "campaign.stage_changed" and sent["payload"]["campaign_id"] == campaign["id"]
    assert sent["payload"]["to"] == "active" and sent["workflow_id"] == workflow["id"]
    [execution] = await executions(client, team, workflow["id"])
    assert execution["status"] == "succeeded" and execution["trigger_event"] == "campaign.stage_changed"
    assert execution["results"][0]["status"] == "succeeded" and execution["results"][0]["attempts"] == 1
    # Publishing again (or a second publisher) starts nothing new for the same event.
    async with db.tenant_transaction(team.tenant_id) as session:
        await session.execute(text("UPDATE outbox_events SET published_at = NULL"))
    await settle(db, run_settings, team.tenant_id)
    assert len(await executions(client, team, workflow["id"])) == 1


async def test_retries_until_success_and_never_repeat_a_delivered_step(
    client: httpx.AsyncClient, make_team, db: Database, run_settings: Settings, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    receiver.fail["/flaky"] = 2
    workflow = await create_workflow(
        client, team, trigger_event="campaign.created",
        steps=[{"type": "webhook", "url": f"{receiver.url}/first"},
               {"type": "webhook", "url": f"{receiver.url}/flaky"}],
    )  # fmt: skip
    await make_campaign(client, team)
    await settle(db, run_settings, team.tenant_id)
    assert len(receiver.hits("/first")) == 1  # delivered once, though the next step was retried twice
    assert len(receiver.hits("/flaky")) == 3
    [execution] = await executions(client, team, workflow["id"])
    assert execution["status"] == "succeeded"
    flaky = execution["results"][1]
    assert flaky["status"] == "succeeded" and flaky["attempts"] == 3 and len(flaky["errors"]) == 2
    assert "500" in flaky["errors"][0]
    # The same delivery id on every attempt, so the receiver can drop duplicates.
    assert len({headers["X-Castmetrics-Delivery"] for headers, _ in receiver.hits("/flaky")}) == 1

    # A step that keeps failing fails the execution after its max_attempts, with the reason.
    receiver.fail["/down"] = 100
    failing = await create_workflow(
        client, team, trigger_event="campaign.created",
        steps=[{"type": "webhook", "url": f"{receiver.url}/down", "max_attempts": 2},
               {"type": "webhook", "url": f"{receiver.url}/never"}],
    )  # fmt: skip
    await make_campaign(client, team)
    await settle(db, run_settings, team.tenant_id)
    [failed] = await executions(client, team, failing["id"])
    assert failed["status"] == "failed" and "step 1 (webhook) failed after 2 attempt(s)" in failed["error"]
    assert len(receiver.hits("/down")) == 2 and receiver.hits("/never") == []


def test_backoff_first_retry_within_five_seconds() -> None:
    import random

    rng = random.Random(7)
    first = [engine.retry_delay(1, 2.0, rng).total_seconds() for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in first) and len(set(first)) > 100  # jittered, within 5 s
    assert all(4.0 <= engine.retry_delay(3, 2.0, rng).total_seconds() <= 8.0 for _ in range(50))  # doubling
    assert engine.retry_delay(40, 2.0, rng).total_seconds() <= 3600  # capped


async def test_disabled_workflows_and_other_tenants_start_nothing(
    client: httpx.AsyncClient, make_team, db: Database, run_settings: Settings, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    a: Team = await make_team()
    b: Team = await make_team()
    disabled = await create_workflow(
        client,
        a,
        trigger_event="campaign.created",
        enabled=False,
        steps=[{"type": "webhook", "url": f"{receiver.url}/off"}],
    )
    active = await create_workflow(
        client, a, trigger_event="campaign.created", steps=[{"type": "webhook", "url": f"{receiver.url}/a"}]
    )
    await make_campaign(client, b)  # tenant B's event
    await settle(db, run_settings, b.tenant_id)
    await settle(db, run_settings, a.tenant_id)
    assert await executions(client, a, active["id"]) == [] and receiver.requests == []
    await make_campaign(client, a)
    await settle(db, run_settings, a.tenant_id)
    assert len(await executions(client, a, active["id"])) == 1 and len(receiver.hits("/a")) == 1
    assert await executions(client, a, disabled["id"]) == [] and receiver.hits("/off") == []
    # B cannot see A's workflow or its executions.
    hidden = await client.get(f"/v1/workflows/{active['id']}/executions", headers=b.auth("owner"))
    assert hidden.status_code == 404


async def test_delays_are_durable_and_cancel_stops_a_waiting_execution(
    client: httpx.AsyncClient, make_team, db: Database, run_settings: Settings, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    workflow = await create_workflow(
        client, team, trigger_event="campaign.created",
        steps=[{"type": "delay", "seconds": 1}, {"type": "webhook", "url": f"{receiver.url}/later"}],
    )  # fmt: skip
    run = await client.post(
        f"/v1/workflows/{workflow['id']}/run", json={"payload": {"n": 1}}, headers=team.auth("owner")
    )
    assert run.status_code == 201, run.text
    await engine.run_pending(db, run_settings, team.tenant_id)
    [waiting] = await executions(client, team, workflow["id"])
    assert waiting["status"] == "waiting" and waiting["results"][0]["status"] == "waiting"
    assert receiver.hits("/later") == []  # parked in the table: no process sleeps
    await asyncio.sleep(1.1)
    await settle(db, run_settings, team.tenant_id)
    [done] = await executions(client, team, workflow["id"])
    assert done["status"] == "succeeded" and len(receiver.hits("/later")) == 1

    second = await client.post(f"/v1/workflows/{workflow['id']}/run", json={}, headers=team.auth("owner"))
    await engine.run_pending(db, run_settings, team.tenant_id)
    cancelled = await client.post(
        f"/v1/workflows/{workflow['id']}/executions/{second.json()['id']}/cancel", headers=team.auth("owner")
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    await asyncio.sleep(1.1)
    await engine.run_pending(db, run_settings, team.tenant_id)
    assert len(receiver.hits("/later")) == 1  # the cancelled one never ran its webhook


async def test_one_tenants_flood_does_not_starve_another(make_team, db: Database, owner_db: Database) -> None:  # type: ignore[no-untyped-def]
    """The dispatcher's due list interleaves tenants: each tenant's first before anyone's second."""
    flood: Team = await make_team()
    quiet: Team = await make_team()
    ids = {}
    for team, count in ((flood, 300), (quiet, 2)):
        async with db.tenant_transaction(team.tenant_id) as session:
            workflow_id = uuid.uuid4()
            await session.execute(
                text("INSERT INTO workflows (tenant_id, id, name, trigger_event, steps, secret) "
                     "VALUES (:t, :w, 'w', 'campaign.created', '[]', 's')"),
                {"t": team.tenant_id, "w": workflow_id},
            )  # fmt: skip
            await session.execute(
                text("INSERT INTO workflow_executions (tenant_id, id, workflow_id, trigger_event, steps, next_run_at) "
                     "SELECT :t, gen_random_uuid(), :w, 'manual', '[]', now() - interval '1 minute' * n "
                     "FROM generate_series(1, :count) n"),
                {"t": team.tenant_id, "w": workflow_id, "count": count},
            )  # fmt: skip
        ids[team.tenant_id] = workflow_id
    async with owner_db.transaction() as session:
        due = (await session.execute(text("SELECT tenant_id FROM workflow_due_executions(100, 4)"))).scalars().all()
    # The flood's executions are older (due earlier), yet the quiet tenant gets its turn in the first round.
    ours = [t for t in due if t in ids]
    assert quiet.tenant_id in ours[:2] and ours.count(quiet.tenant_id) >= 1
    async with owner_db.transaction() as session:
        await session.execute(text("DELETE FROM workflows WHERE id = ANY(:ids)"), {"ids": list(ids.values())})


def test_a_killed_worker_is_taken_over_without_repeating_finished_steps(
    settings: Settings, owner_url: str, runtime_url: str, receiver: Receiver
) -> None:
    """A real ``castmetrics worker`` runs the execution; it is killed while the second step's request
    is in flight; a second worker picks the execution up when the lease runs out and finishes it,
    without sending the first step again."""
    asyncio.run(_killed_worker(settings, owner_url, runtime_url, receiver))


async def _killed_worker(settings: Settings, owner_url: str, runtime_url: str, receiver: Receiver) -> None:
    db = Database(runtime_url, pool_size=2)
    tenant_id = uuid.uuid4()
    try:
        from castmetrics.auth.principal import Actor
        from castmetrics.identity import service as identity
        from castmetrics.tenancy.schemas import TenantCreate
        from castmetrics.workflows.models import Workflow

        async with db.tenant_transaction(tenant_id) as session:
            await identity.provision_tenant(
                session, TenantCreate(name="Kill", slug=f"kill-{tenant_id.hex[:8]}", subscription_tier="pro"),  # type: ignore[arg-type]
                Actor.system("tests"), tenant_id=tenant_id,
            )  # fmt: skip
            workflow = Workflow(
                tenant_id=tenant_id, id=uuid.uuid4(), name="three steps", trigger_event="campaign.created", secret="s",
                steps=[{"type": "webhook", "url": f"{receiver.url}/one"},
                       {"type": "webhook", "url": f"{receiver.url}/two", "timeout_seconds": 30},
                       {"type": "webhook", "url": f"{receiver.url}/three"}],
            )  # fmt: skip
            session.add(workflow)
            await session.flush()
            execution = await engine.start(session, workflow, trigger_event="manual", payload={})
        receiver.hold["/two"] = 60.0  # the first worker hangs on step two until it is killed
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("CASTMETRICS_")}
        env.update(
            DATABASE_URL=owner_url, CASTMETRICS_APP_ROLE=settings.app_role,
            CASTMETRICS_SECRET_KEY=settings.secret_key.get_secret_value(), CASTMETRICS_LOG_LEVEL="WARNING",
            CASTMETRICS_ALLOW_PRIVATE_WEBHOOKS="true", CASTMETRICS_WORKFLOW_LEASE_SECONDS="3",
        )  # fmt: skip
        command = [sys.executable, "-m", "castmetrics", "worker", "--concurrency", "2"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not receiver.hits("/two"):
                assert time.monotonic() < deadline, "the first worker never reached step two"
                assert first.poll() is None, "the first worker exited"
                await asyncio.sleep(0.1)
        finally:
            first.kill()
            first.wait(timeout=10)
        assert len(receiver.hits("/one")) == 1 and receiver.hits("/three") == []
        second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                async with db.tenant_transaction(tenant_id) as session:
                    status = await session.scalar(
                        text("SELECT status FROM workflow_executions WHERE id = :id"), {"id": execution.id}
                    )
                if status == "succeeded":
                    break
                assert time.monotonic() < deadline, f"the execution is still {status}"
                await asyncio.sleep(0.2)
        finally:
            second.terminate()
            second.wait(timeout=20)
        assert len(receiver.hits("/one")) == 1  # finished before the kill: never sent again
        assert len(receiver.hits("/two")) == 2  # the killed attempt, then the one that finished
        assert len(receiver.hits("/three")) == 1
    finally:
        await db.dispose()
