"""The job worker is supervised: it survives a real database restart, has a pool of its own, reports its
heartbeat in /readyz and /metrics, and stops (standalone) on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from sqlalchemy import text

from castmetrics.app import create_app
from castmetrics.auth.principal import Actor
from castmetrics.config import Settings
from castmetrics.db import migrate as migrations
from castmetrics.db.embedded import EmbeddedPostgres
from castmetrics.db.session import Database
from castmetrics.identity import service as identity
from castmetrics.jobs.heartbeat import Heartbeat
from castmetrics.tenancy.schemas import TenantCreate
from castmetrics.workflows import engine
from castmetrics.workflows.models import Workflow
from tests.support.http import asgi_client


async def _within(seconds: float, check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        await asyncio.sleep(0.2)


async def _start_workflow(db: Database, tenant_id: uuid.UUID) -> uuid.UUID:
    """A pending execution of a one-step workflow (a condition that holds): only the worker finishes it."""
    async with db.tenant_transaction(tenant_id) as session:
        workflow = Workflow(
            tenant_id=tenant_id, id=uuid.uuid4(), name="after a restart", trigger_event="campaign.created",
            secret="s", steps=[{"type": "condition", "field": "ok", "operator": "eq", "value": True}],
        )  # fmt: skip
        session.add(workflow)
        await session.flush()
        execution = await engine.start(session, workflow, trigger_event="manual", payload={"ok": True})
    return execution.id


async def _status(db: Database, tenant_id: uuid.UUID, execution_id: uuid.UUID) -> str | None:
    async with db.tenant_transaction(tenant_id) as session:
        status = await session.scalar(
            text("SELECT status FROM workflow_executions WHERE id = :id"), {"id": execution_id}
        )
    return None if status is None else str(status)


async def test_the_worker_processes_a_workflow_after_a_database_restart(settings: Settings, tmp_path: Path) -> None:
    # given serve's app with its in-process worker, on a PostgreSQL server of this test's own. Its data is
    # outside pytest's temporary folder: every pytest run starting meanwhile takes away the access the
    # server's system user needs there to start again.
    pgdata = Path(tempfile.mkdtemp(prefix="castmetrics-restart-"))
    server = EmbeddedPostgres(pgdata, database="restart")
    db: Database | None = None
    try:
        owner_url = server.start()
        local = settings.model_copy(
            update={
                "database_url": owner_url,
                "app_database_url": None,
                "data_dir": tmp_path,
                "in_process_worker": True,
            }
        )
        runtime_url = migrations.migrate(local, owner_url)
        local = local.model_copy(update={"app_database_url": runtime_url, "worker_stale_seconds": 3.0})
        db = Database(runtime_url, pool_size=2, max_overflow=0)
        tenant_id = uuid.uuid4()
        async with db.tenant_transaction(tenant_id) as session:
            await identity.provision_tenant(
                session, TenantCreate(name="Restart FM", slug="restart-fm", subscription_tier="pro"),
                Actor.system("tests"), tenant_id=tenant_id,
            )  # fmt: skip
        app = create_app(local)
        heartbeat = app.state.worker_heartbeat
        assert isinstance(heartbeat, Heartbeat)
        async with app.router.lifespan_context(app), asgi_client(app) as http:
            before = await _start_workflow(db, tenant_id)

            async def finished(execution_id: uuid.UUID) -> bool:
                assert db is not None
                return await _status(db, tenant_id, execution_id) == "succeeded"

            await _within(60, lambda: finished(before), "the worker runs a workflow before the restart")
            assert (await http.get("/readyz")).status_code == 200

            # when the database stops for 5 seconds and starts again
            server.stop()
            answers: list[httpx.Response] = []
            for _ in range(10):
                answers.append(await http.get("/readyz"))
                await asyncio.sleep(0.5)
            server.start()
            after = await _start_workflow(db, tenant_id)

            # then the worker comes back and runs the workflow started after the restart
            await _within(90, lambda: finished(after), "the worker runs a workflow after the restart")
            assert heartbeat.restarts >= 1  # procrastinate's worker stopped and was started again
            assert {answer.status_code for answer in answers} == {503}  # not ready while it was down
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["worker_heartbeat_age_seconds"] < 3.0
            metrics = (await http.get("/metrics")).text
            assert "castmetrics_worker_heartbeat_age_seconds" in metrics
            assert "castmetrics_worker_restarts_total" in metrics
    finally:
        if db is not None:
            await db.dispose()
        server.stop()
        shutil.rmtree(pgdata, ignore_errors=True)


async def test_readyz_is_503_when_the_worker_heartbeat_is_stale(settings: Settings, db: Database) -> None:
    # given a process whose job worker last beat at a time the test controls
    now = [1000.0]
    heartbeat = Heartbeat(60.0, clock=lambda: now[0])
    app = create_app(settings, database=db)
    app.state.worker_heartbeat = heartbeat
    heartbeat.publish()
    try:
        async with asgi_client(app) as http:
            now[0] += 12.5
            fresh = await http.get("/readyz")
            fresh_metrics = (await http.get("/metrics")).text
            # when it has not beaten for longer than the limit
            now[0] += 50.0
            stale = await http.get("/readyz")
            heartbeat.beat()
            again = await http.get("/readyz")
    finally:
        heartbeat.unpublish()
    # then readiness fails, naming the worker, until it beats again
    assert fresh.status_code == 200
    assert fresh.json() == {"status": "ready", "worker_heartbeat_age_seconds": 12.5}
    assert "castmetrics_worker_heartbeat_age_seconds 12.5" in fresh_metrics
    assert stale.status_code == 503
    assert stale.headers["content-type"] == "application/problem+json"
    assert "job worker is stalled" in stale.json()["detail"]
    assert stale.json()["worker_heartbeat_age_seconds"] == 62.5
    assert again.status_code == 200


async def test_readyz_without_a_worker_in_the_process_says_nothing_of_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.json() == {"status": "ready"}


async def test_the_in_process_worker_has_a_pool_of_its_own(settings: Settings, db: Database) -> None:
    app = create_app(settings.model_copy(update={"in_process_worker": True, "worker_pool_size": 3}), database=db)
    worker_db = app.state.worker_db
    assert isinstance(worker_db, Database)
    assert worker_db is not db and worker_db.engine is not db.engine
    assert worker_db.engine.pool.size() == 3  # type: ignore[attr-defined]
    assert worker_db.engine.pool.overflow() == -3  # type: ignore[attr-defined]  # no overflow beyond the size
    assert worker_db.url == db.url  # the same runtime role
    await worker_db.dispose()


def test_the_standalone_worker_stops_on_sigterm(settings: Settings, owner_url: str, runtime_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("CASTMETRICS_")}
    env.update(
        DATABASE_URL=owner_url, CASTMETRICS_APP_ROLE=settings.app_role, CASTMETRICS_LOG_JSON="true",
        CASTMETRICS_SECRET_KEY=settings.secret_key.get_secret_value(),
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "castmetrics", "worker", "--concurrency", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        for line in worker.stderr:
            if "worker.started" in line:
                break
        else:
            raise AssertionError("the worker never started")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        rest = worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "worker.restarting" not in rest  # a stop asked for is not a failure to recover from
