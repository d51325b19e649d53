"""The demo's workflows: the in-app webhook receiver accepts only deliveries signed by the tenant's
workflow and exists only when switched on; the demo seed creates its two workflows once; a delivery
through a real local server succeeds, and the pacing alert emails the sales role."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select
from structlog.testing import capture_logs

from castmetrics.app import create_app
from castmetrics.auth.dependencies import OPTIONAL_PUBLIC_ROUTES, PUBLIC_ROUTES
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo import service as demo
from castmetrics.demo import workflows as demo_workflows
from castmetrics.mail.models import Email
from castmetrics.tenancy.models import Tenant
from castmetrics.workflows import engine
from castmetrics.workflows.models import Workflow, WorkflowExecution
from castmetrics.workflows.steps import sign
from tests.factories.identity import Team
from tests.support.http import asgi_client, free_port, wait_for
from tests.support.routes import api_routes, permissions_of_route

WEBHOOK = "Tell the partner channel about campaign changes"
ALERT = "Alert sales when a booking falls behind"


@pytest.fixture
async def receiving(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with the demo receiver on."""
    app = create_app(settings.model_copy(update={"demo_webhook_receiver": True}), database=db)
    async with asgi_client(app) as http:
        yield http


async def _demo_workflows(db: Database, tenant: Tenant, base_url: str = "http://127.0.0.1:8000") -> dict[str, Workflow]:
    async with db.tenant_transaction(tenant.id) as session:
        await demo_workflows.seed_workflows(session, tenant, demo.DEMO_ACTOR, base_url=base_url)
        return {workflow.name: workflow for workflow in await session.scalars(select(Workflow))}


def _delivery(
    workflow: Workflow, *, secret: str | None = None, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(
        {"workflow_id": str(workflow.id), "execution_id": str(uuid.uuid4()), "event": "campaign.stage_changed",
         "payload": {"to": "active"}}
    )  # fmt: skip
    stamp = int(time.time() if at is None else at)
    signature = sign(secret or workflow.secret, stamp, body)
    return body, {"Content-Type": "application/json", "X-Castmetrics-Signature": signature}


async def test_the_receiver_accepts_only_deliveries_signed_by_the_tenants_workflow(
    receiving: httpx.AsyncClient, db: Database, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    # given a tenant with the demo workflows, and another tenant
    tenant: Tenant = await make_tenant(subscription_tier="pro")
    other: Tenant = await make_tenant(subscription_tier="pro")
    workflow = (await _demo_workflows(db, tenant))[WEBHOOK]
    url = f"/v1/demo/webhook/{tenant.slug}"

    # when a delivery signed with the workflow's secret arrives, then it is accepted
    body, headers = _delivery(workflow)
    with capture_logs() as logs:
        accepted = await receiving.post(url, content=body, headers=headers)
    assert accepted.status_code == 204, accepted.text
    [received] = [line for line in logs if line["event"] == "workflows.demo_webhook_received"]
    sent = orjson.loads(body)
    assert received["workflow_id"] == str(workflow.id) and received["execution_id"] == sent["execution_id"]
    assert received["trigger_event"] == "campaign.stage_changed"

    # and every other delivery is refused alike
    refusals = {
        "bad signature": (url, *_delivery(workflow, secret="not-the-secret")),
        "stale": (url, *_delivery(workflow, at=time.time() - 301)),
        "unknown slug": ("/v1/demo/webhook/no-such-network", body, headers),
        "another tenant's slug": (f"/v1/demo/webhook/{other.slug}", body, headers),
        "tampered body": (url, body.replace(b"active", b"paused"), headers),
        "unsigned": (url, body, {"Content-Type": "application/json"}),
        "no workflow id": (url, b"{}", {"X-Castmetrics-Signature": sign(workflow.secret, int(time.time()), b"{}")}),
    }
    for why, (path, content, sent_headers) in refusals.items():
        refused = await receiving.post(path, content=content, headers=sent_headers)
        assert refused.status_code == 401, why
        assert refused.headers["content-type"].startswith("application/problem+json"), why
    too_big = await receiving.post(url, content=b"x" * (64 * 1024 + 1), headers=headers)
    assert too_big.status_code == 413


async def test_the_receiver_is_absent_unless_switched_on_and_public_only_then(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, db: Database
) -> None:
    # given the default app, when the receiver is posted to, then there is no such route
    missing = await client.post("/v1/demo/webhook/demo", content=b"{}")
    assert missing.status_code == 404
    assert not any(path.startswith("/v1/demo/") for path, _, _ in api_routes(app))
    # and with the setting on, its one public route is declared as such
    on = create_app(settings.model_copy(update={"demo_webhook_receiver": True}), database=db)
    unguarded = {
        (method, path)
        for path, methods, route in api_routes(on)
        for method in methods
        if not permissions_of_route(route) and (method, path) not in PUBLIC_ROUTES
    }
    assert unguarded == OPTIONAL_PUBLIC_ROUTES


async def test_the_demo_seed_creates_its_two_workflows_once(
    owner_db: Database, db: Database, settings: Settings
) -> None:
    # given the demo seeded twice
    tenant_id = (await demo.seed(owner_db, db, settings, webhook_base_url="http://127.0.0.1:9000")).tenant.id
    await demo.seed(owner_db, db, settings)

    # then it has the two workflows, once each
    async with db.tenant_transaction(tenant_id) as session:
        workflows = {workflow.name: workflow for workflow in await session.scalars(select(Workflow))}
    assert sorted(workflows) == sorted([WEBHOOK, ALERT])
    webhook, alert = workflows[WEBHOOK], workflows[ALERT]
    assert webhook.trigger_event == "campaign.stage_changed" and webhook.enabled
    assert webhook.steps[0]["url"] == f"http://127.0.0.1:9000/v1/demo/webhook/{demo.DEMO_SLUG}"
    assert alert.trigger_event == "booking.pacing_behind"
    assert alert.steps[0]["type"] == "email" and alert.steps[0]["to"]["roles"] == ["sales"]


@pytest.fixture
def receiver_server(settings: Settings, runtime_url: str) -> Iterator[str]:
    """The app with the demo receiver on, served by uvicorn on a local port in a thread of its own."""
    served = settings.model_copy(update={"app_database_url": runtime_url, "demo_webhook_receiver": True})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(served), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/healthz")
    yield base
    server.should_exit = True
    thread.join(timeout=10)


async def _run(db: Database, settings: Settings, workflow: Workflow, payload: dict[str, Any]) -> WorkflowExecution:
    async with db.tenant_transaction(workflow.tenant_id) as session:
        started = await engine.start(session, workflow, trigger_event=workflow.trigger_event, payload=payload)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await engine.run_pending(db, settings, workflow.tenant_id)
        async with db.tenant_transaction(workflow.tenant_id) as session:
            execution = await session.get_one(WorkflowExecution, (workflow.tenant_id, started.id))
        if execution.status in ("succeeded", "failed", "cancelled"):
            return execution
    raise AssertionError(f"execution {started.id} did not finish in time")


async def test_the_demo_workflows_deliver_to_the_receiver_and_email_sales(
    receiver_server: str, make_team, db: Database, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    # given a tenant with the demo workflows pointed at a served app with the receiver on
    team: Team = await make_team()
    async with db.tenant_transaction(team.tenant_id) as session:
        tenant = await session.get_one(Tenant, team.tenant_id)
    workflows = await _demo_workflows(db, tenant, base_url=receiver_server)
    # under the settings serve --demo gives: of private URLs, only the demo receiver's own is allowed
    receiver = demo_workflows.receiver_url(receiver_server, tenant.slug)
    running = settings.model_copy(update={"private_webhook_urls": [receiver]})

    # when the webhook workflow runs, then the receiver verified and accepted the delivery
    delivered = await _run(db, running, workflows[WEBHOOK], {"campaign_id": str(uuid.uuid4()), "to": "active"})
    assert delivered.status == "succeeded", delivered.error
    assert delivered.results[0]["result"]["status_code"] == 204

    # when a booking falls behind, then everyone with the sales role gets the alert
    behind = {"booking_id": "b-42", "delivered": 800, "expected_to_date": 1000, "booked": 5000,
              "flight_start": "2025-01-01", "flight_end": "2025-01-31"}  # fmt: skip
    alerted = await _run(db, running, workflows[ALERT], behind)
    assert alerted.status == "succeeded", alerted.error
    async with db.tenant_transaction(team.tenant_id) as session:
        emails = list(await session.scalars(select(Email).where(Email.kind == "workflow")))
    assert [email.to_address for email in emails] == [team.emails["sales"]]
    assert emails[0].subject == "Booking b-42 is behind"
    assert emails[0].body == "Delivered 800 of 1000 expected by now (booked 5000, flight 2025-01-01 to 2025-01-31)."
